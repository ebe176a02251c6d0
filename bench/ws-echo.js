// Baseline for the gateway benchmark: node's `ws` echo server with its defaults, no auth.
// Usage: node ws-echo.js PORT  (listens on 127.0.0.1:PORT, prints "listening" when ready)
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 9002);
const wss = new WebSocketServer({ host: '127.0.0.1', port });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => console.log(`ws-echo listening on 127.0.0.1:${port}`));
