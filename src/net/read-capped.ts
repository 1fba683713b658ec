/**
 * A body read whole, or undefined as soon as it passes `max` bytes: nothing past the cap is kept, and leaving the
 * loop early ends the stream. Request bodies arrive this way, under the API's caps.
 */
export async function readCapped(body: AsyncIterable<Buffer>, max: number): Promise<Buffer | undefined> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of body) {
    n += chunk.length;
    if (n > max) return undefined;
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}
