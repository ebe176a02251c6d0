# shellcheck shell=bash
# Helpers shared by scripts/bench.d/*.sh: free loopback ports and waiting for a server to listen.
# Source this file; do not run it.

# free_port: a free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# free_udp_tcp_port: a port free for both TCP and UDP (a node's gossip and node link).
free_udp_tcp_port() {
  python3 -c '
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        u.close(); t.close()'
}

# wait_port PORT: until something accepts on 127.0.0.1:PORT (20 s); non-zero if nothing does.
wait_port() {
  for _ in $(seq 400); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# The servers a benchmark started: append each one's pid to `pids`; `stop_all` (also the EXIT
# trap) stops and reaps them.
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
