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

declare module 'tftp' {
  import type { EventEmitter } from 'node:events';
  import type { Readable, Writable } from 'node:stream';
  export interface GetStream extends Readable {
    file: string;
    method: 'GET' | 'PUT';
    stats: {
      blockSize: number;
      windowSize: number;
      size: number | null;
      userExtensions: Record<string, string>;
      retries: number;
      timeout: number;
      localAddress: string;
      localPort: number;
      remoteAddress: string;
      remotePort: number;
    };
    abort(error?: string | Error): void;
    on(event: string, fn: (...args: any[]) => void): this;
  }
  export interface PutStream extends Writable {
    setSize(n: number): void;
    setUserExtensions(ext: Record<string, string>): void;
  }
  export interface Server extends EventEmitter {
    listen(): void;
    close(): void;
    _socket: import('node:dgram').Socket;
  }
  export function createServer(
    opts: {
      host?: string;
      port?: number;
      root?: string;
      denyPUT?: boolean;
      denyGET?: boolean;
      blockSize?: number;
      windowSize?: number;
      timeout?: number;
      retries?: number;
    },
    listener?: (req: GetStream, res: PutStream) => void,
  ): Server;
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
  const tftp: { createServer: typeof createServer; createClient: typeof createClient };
  export default tftp;
}
