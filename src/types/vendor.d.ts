// Minimal typings for the CommonJS pieces we use from untyped packages.
declare module 'dhcp/lib/seqbuffer.js' {
  class SeqBuffer {
    constructor(buf?: Buffer, len?: number);
    _data: Buffer;
    _r: number;
    _w: number;
    getUInt8(): number;
    getUInt16(): number;
    getUInt32(): number;
    getIP(): string;
    getMAC(htype: number, hlen: number): string;
    getUTF8(len: number): string;
    addUInt8(v: number): void;
    addUInt16(v: number): void;
    addUInt32(v: number): void;
    addIP(ip: string): void;
    addMac(mac: string): void;
    addUTF8Pad(v: string, len: number): void;
  }
  export default SeqBuffer;
}

declare module 'sockopt' {
  export function setsockopt(socket: unknown, level: number, option: number, value: number): void;
  export function getsockopt(socket: unknown, level: number, option: number): number;
}

// a test-only client (the storm's simulated machines); the appliance's TFTP is its own (src/boot/tftp)
declare module 'tftp' {
  export function createClient(opts: {
    host: string;
    port?: number;
    blockSize?: number;
    windowSize?: number;
    retries?: number;
    timeout?: number;
  }): {
    get(file: string, cb: (err: Error | null, data?: Buffer) => void): void;
  };
  const tftp: { createClient: typeof createClient };
  export default tftp;
}
