// Reading numbers out of text files byte by byte: one pass, every byte looked at once, nothing
// allocated per number. Decimal numbers are parsed exactly (Clinger's fast path: an integer
// mantissa below 2^53 scaled by an exact power of ten is one correctly rounded operation), and
// the rare others (more digits, huge exponents) go to Number() on their text.

const POWERS = Array.from({ length: 23 }, (_, i) => 10 ** i); // exact in float64 up to 1e22

export const CHAR = { tab: 9, newline: 10, cr: 13, space: 32, hash: 35, plus: 43, comma: 44, minus: 45, dot: 46, colon: 58, zero: 48, nine: 57, e: 101, E: 69, quote: 34 } as const;

/** Where a scan stands: the bytes, the position, and how many bytes it has examined (the work, for tests). */
export class Scanner {
  position = 0;
  /** Bytes examined, counted as they are: the parse's work, which tests hold linear in the file's size. */
  scanned = 0;
  /** The value of the last number(), and where it ended. */
  value = 0;
  constructor(readonly bytes: Uint8Array) {}

  /**
   * Parses a decimal number at the position (sign, digits, fraction, exponent); returns false when
   * there is none there (the position is then unchanged). Stops at the first byte that cannot
   * continue it, which the caller checks.
   */
  number(): boolean {
    const bytes = this.bytes;
    const start = this.position;
    let p = start;
    const end = bytes.length;
    let negative = false;
    if (p < end && (bytes[p] === CHAR.minus || bytes[p] === CHAR.plus)) negative = bytes[p++] === CHAR.minus;
    let mantissa = 0;
    let digits = 0; // significant digits taken into the mantissa
    let exponent = 0;
    let any = false;
    let exact = true;
    while (p < end && bytes[p] >= CHAR.zero && bytes[p] <= CHAR.nine) {
      any = true;
      if (digits < 15 || mantissa === 0) {
        mantissa = mantissa * 10 + (bytes[p] - CHAR.zero);
        if (mantissa !== 0) digits++;
      } else {
        exponent++;
        if (bytes[p] !== CHAR.zero) exact = false;
      }
      p++;
    }
    if (p < end && bytes[p] === CHAR.dot) {
      p++;
      while (p < end && bytes[p] >= CHAR.zero && bytes[p] <= CHAR.nine) {
        any = true;
        if (digits < 15 || mantissa === 0) {
          mantissa = mantissa * 10 + (bytes[p] - CHAR.zero);
          if (mantissa !== 0) digits++;
          exponent--;
        } else if (bytes[p] !== CHAR.zero) exact = false;
        p++;
      }
    }
    if (!any) {
      this.scanned += p - start + 1;
      return false;
    }
    if (p < end && (bytes[p] === CHAR.e || bytes[p] === CHAR.E)) {
      let q = p + 1;
      let negativeExponent = false;
      if (q < end && (bytes[q] === CHAR.minus || bytes[q] === CHAR.plus)) negativeExponent = bytes[q++] === CHAR.minus;
      let e = 0;
      const digitsStart = q;
      while (q < end && bytes[q] >= CHAR.zero && bytes[q] <= CHAR.nine) {
        e = e * 10 + (bytes[q] - CHAR.zero); // absurd exponents overflow to Infinity, off the fast path: Number() reads them
        q++;
      }
      if (q > digitsStart) {
        exponent += negativeExponent ? -e : e;
        p = q;
      }
    }
    this.scanned += p - start + 1;
    this.position = p;
    if (exact && exponent >= -22 && exponent <= 22) {
      const magnitude = exponent < 0 ? mantissa / POWERS[-exponent] : mantissa * POWERS[exponent];
      this.value = negative ? -magnitude : magnitude;
    } else {
      // beyond the fast path: the platform's correctly rounded conversion of the token's text
      let text = '';
      for (let i = start; i < p; i++) text += String.fromCharCode(bytes[i]);
      this.value = Number(text);
    }
    return true;
  }

  /** A non-negative decimal integer at the position (no sign, no fraction); false when there is none. */
  integer(): boolean {
    const bytes = this.bytes;
    const start = this.position;
    let p = start;
    let value = 0;
    while (p < bytes.length && bytes[p] >= CHAR.zero && bytes[p] <= CHAR.nine) value = value * 10 + (bytes[p++] - CHAR.zero);
    this.scanned += p - start + 1;
    if (p === start) return false;
    this.position = p;
    this.value = value;
    return true;
  }

  /** Skips spaces, tabs and carriage returns (not newlines). */
  skipBlanks(): void {
    const bytes = this.bytes;
    let p = this.position;
    while (p < bytes.length && (bytes[p] === CHAR.space || bytes[p] === CHAR.tab || bytes[p] === CHAR.cr)) p++;
    this.scanned += p - this.position;
    this.position = p;
  }

  /** Moves to the start of the next line (past the newline), or the end. */
  nextLine(): void {
    const bytes = this.bytes;
    let p = this.position;
    while (p < bytes.length && bytes[p] !== CHAR.newline) p++;
    this.scanned += p - this.position + 1;
    this.position = p < bytes.length ? p + 1 : p;
  }

  /** The text from `start` to the next blank, newline or `stop` byte, for messages. */
  tokenAt(start: number, stop = -1): string {
    let p = start;
    const bytes = this.bytes;
    while (p < bytes.length && p - start < 40 && bytes[p] !== CHAR.space && bytes[p] !== CHAR.tab && bytes[p] !== CHAR.newline && bytes[p] !== CHAR.cr && bytes[p] !== stop) p++;
    return Buffer.from(bytes.subarray(start, p)).toString('latin1');
  }
}

/** A typed array that grows by doubling: the parse appends without a JS array of numbers. */
export class Growing<T extends Float32Array | Int32Array | Float64Array> {
  length = 0;
  constructor(private data: T) {}

  push(value: number): void {
    if (this.length === this.data.length) {
      const bigger = new (this.data.constructor as new (n: number) => T)(Math.max(16, this.data.length * 2));
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = value;
  }

  /** The values pushed, without the spare room. */
  values(): T {
    return this.data.subarray(0, this.length) as T;
  }
}
