export const ipToInt = (ip: string): number => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
export const intToIp = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
export const sameSubnet = (a: string, b: string, mask: string): boolean =>
  (ipToInt(a) & ipToInt(mask)) >>> 0 === (ipToInt(b) & ipToInt(mask)) >>> 0;
