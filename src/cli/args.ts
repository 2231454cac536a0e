// Command-line helpers shared by the commands.

/** `--lr -0.1` would read as two options; join a negative number to its option so it is judged as a value. */
export function joinNegativeNumbers(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const next = args[i + 1];
    if (args[i].startsWith('--') && !args[i].includes('=') && next !== undefined && /^-\d|^-\.\d|^-Infinity$/.test(next)) {
      out.push(`${args[i]}=${next}`);
      i++;
    } else out.push(args[i]);
  }
  return out;
}

