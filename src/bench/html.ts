// What the HTML reports share.

/** Text made safe to place in HTML. */
export const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
