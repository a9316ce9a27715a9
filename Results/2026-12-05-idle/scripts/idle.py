# Holds N idle TCP connections to a broker (each sent one ApiVersions request first, so the
# broker has really set it up), until killed.
import socket, struct, sys, time, resource
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1000, n + 1000))
req = struct.pack(">hhih", 18, 0, 1, -1)
frame = struct.pack(">i", len(req)) + req
socks = []
for i in range(n):
    s = socket.create_connection((host, port))
    s.sendall(frame)
    socks.append(s)
for s in socks:
    s.recv(4)
print("idle connections open:", len(socks), flush=True)
while True:
    time.sleep(3600)
