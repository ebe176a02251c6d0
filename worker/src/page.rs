//! The standalone test page: connects to `/ws` with the token from its own URL, sends an event
//! every second with acks on, and shows every frame that comes back.

pub const HTML: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>elastic-ws test page</title>
<style>body{font:14px monospace;margin:2em}#log{white-space:pre-wrap}</style></head>
<body><h1>elastic-ws</h1><p id="status">connecting…</p><div id="log"></div>
<script>
const q = new URLSearchParams(location.search);
const token = q.get("access_token");
const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws?ack=1" +
  (token ? "&access_token=" + encodeURIComponent(token) : "");
const log = (s) => { const el = document.getElementById("log"); el.textContent = s + "\n" + el.textContent; };
const ws = new WebSocket(url);
let n = 0, timer;
ws.onopen = () => {
  document.getElementById("status").textContent = "connected";
  timer = setInterval(() => {
    const ev = {msg: "hello " + (++n), clientId: "test-page", timestamp: Date.now()};
    ws.send(JSON.stringify(ev)); log("→ " + JSON.stringify(ev));
  }, 1000);
};
ws.onmessage = (e) => log("← " + e.data);
ws.onclose = (e) => { clearInterval(timer); document.getElementById("status").textContent = "closed " + e.code + " " + e.reason; };
ws.onerror = () => document.getElementById("status").textContent = "error (see console)";
</script></body></html>
"#;
