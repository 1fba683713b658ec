import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { createServer, type Server, type Socket } from 'node:net';

/** A TLS connection starts with a handshake record (type 22); HTTP starts with a method's letter. */
const TLS_HANDSHAKE = 0x16;

/**
 * One port, both protocols: each connection goes to the HTTPS server when its first byte opens a TLS
 * handshake, else to the plain one. iPXE and the inspector keep plain HTTP; kubectl, which sends a token
 * only over TLS, gets HTTPS on the same address. The returned server closes both.
 */
export function dualProtocolServer(plain: HttpServer, secure: HttpsServer): Server & { closeAllConnections(): void } {
  // the two inner servers never listen, and node tracks an http.Server's connections only once it does: their
  // closeAllConnections() would leave an open watch or event stream holding close() for ever
  const open = new Set<Socket>();
  const route = (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    // a connection that never says anything is not kept
    socket.setTimeout(30_000, () => socket.destroy());
    socket.once('data', (first: Buffer) => {
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(first);
      (first[0] === TLS_HANDSHAKE ? secure : plain).emit('connection', socket);
      process.nextTick(() => socket.resume());
    });
    socket.on('error', () => socket.destroy());
  };
  const server = createServer({ pauseOnConnect: false }, route) as Server & { closeAllConnections(): void };
  server.closeAllConnections = () => {
    for (const socket of open) socket.destroy();
  };
  server.on('close', () => {
    plain.close();
    secure.close();
  });
  return server;
}
