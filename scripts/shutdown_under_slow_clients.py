import socket, subprocess, sys, time, signal, os
port = 18181
p = subprocess.Popen([sys.argv[1], str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(200):
    try:
        s = socket.create_connection(("127.0.0.1", port)); s.close(); break
    except OSError:
        time.sleep(0.05)
# acked entries first
for i in range(20):
    s = socket.create_connection(("127.0.0.1", port))
    body = b"[1,2,3,4,5]"
    s.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    s.recv(1000); s.close()
slow = []
n = int(sys.argv[2])
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if i % 2 == 0:
        s.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Le")  # half a head
    else:
        s.sendall(b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[1,")  # half a body
    slow.append(s)
time.sleep(0.5)
t0 = time.time()
p.send_signal(signal.SIGTERM)
rc = p.wait()
print(f"{n} slow clients: exit {rc} after {time.time()-t0:.2f} s")
