// The documented Node.js example (docs/client.md), compiled with `tsc --strict` by `npm test`
// against the built package, so it cannot drift from the library's types.
import WebSocket from "ws";
import { connect, type PresenceEvent, RequestError } from "@elastic-ws/client";

const client = connect({ url: "ws://127.0.0.1:8080/ws", token: process.env.EWS_TOKEN, WebSocket });
client.onPush((msg, topic, from) => console.log("pushed:", msg, topic ?? "(to me)", from ?? "(backend)"));
client.onPresence((e: PresenceEvent) => console.log(e.type, e.clientId, e.topic));
for (let i = 0; i < 1000; i++) {
  // Waits while 1000 events are unacknowledged (bufferSize): the server's pace sets yours.
  void client.send({ msg: `reading ${i}` }).catch((e) => console.error(e.kind, e.message));
}
try {
  console.log("reached", await client.publish("room.42", "hello"));
} catch (e) {
  if (e instanceof RequestError && e.kind === "publish_forbidden") console.log("not granted");
}
