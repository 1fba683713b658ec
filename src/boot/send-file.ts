import { createReadStream } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { HttpBindings } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { Context } from 'hono';
import { streamFile } from './file-stream.js';

/** The bytes a Range header asks for: one range (RFC 9110); several, or a malformed one, get the whole file. */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
  const m = header === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Number(m[2]);
    return n === 0 ? 'unsatisfiable' : { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/** The appliance's files are boot binaries and images; an iPXE script is text. */
const contentType = (p: string) => (p.endsWith('.ipxe') ? 'text/plain; charset=utf-8' : 'application/octet-stream');

/**
 * A file (or the range asked for) straight from reused read buffers into the socket (file-stream.ts): no web
 * stream in between, which is where serving large images spent its time. A client that goes away ends the
 * read and closes the file.
 */
export function sendFile(
  c: Context,
  file: { path: string; size: number },
  headers: Record<string, string>,
  /** the last byte went out (no error), or the download ended early */
  done: (e?: Error) => void,
): Response {
  const range = parseRange(c.req.header('range'), file.size);
  const base = { ...headers, 'Accept-Ranges': 'bytes', 'Content-Type': contentType(file.path) };
  if (range === 'unsatisfiable') {
    return c.body(null, 416, { ...base, 'Content-Range': `bytes */${file.size}` });
  }
  const [start, end] = range ? [range.start, range.end] : [0, file.size - 1];
  const status = range ? 206 : 200;
  const head = {
    ...base,
    'Content-Length': String(Math.max(0, end - start + 1)),
    ...(range ? { 'Content-Range': `bytes ${start}-${end}/${file.size}` } : {}),
  };
  // HEAD goes through hono: it answers HEAD with a copy of the GET response, and @hono/node-server writes that
  // copy's headers again, so a HEAD already sent on the socket ended in ERR_HTTP_HEADERS_SENT and a torn connection
  if (c.req.method === 'HEAD') return c.body(null, status, head);
  const out = (c.env as Partial<HttpBindings> | undefined)?.outgoing as ServerResponse | undefined;
  if (!out) {
    // no node socket (app.request in tests): the same bytes as a web stream
    const read = () => (file.size === 0 ? Readable.from([]) : createReadStream(file.path, { start, end }));
    return new Response(Readable.toWeb(read()) as ReadableStream, { status, headers: head });
  }
  out.writeHead(status, head);
  streamFile(file.path, start, end, out).then(
    () => {
      out.end();
      done();
    },
    (e: Error) => {
      done(e);
      out.destroy(e);
    },
  );
  return RESPONSE_ALREADY_SENT;
}
