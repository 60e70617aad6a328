import BitbucketKit
import Foundation
import TestSupport
import Testing

/// A helper process (Python) that prints its port on the first stdout line and serves until
/// terminated.
final class HelperProcess: @unchecked Sendable {
    // @unchecked: `process` and the pipe are only touched by the creating test, sequentially.
    let process = Process()
    let port: Int
    private let output: FileHandle

    init(python script: String, arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: which("python3") ?? "/usr/bin/python3")
        process.arguments = ["-u", "-c", script] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        output = pipe.fileHandleForReading
        var line = Data()
        while let byte = try output.read(upToCount: 1), let first = byte.first, first != UInt8(ascii: "\n") {
            line.append(first)
        }
        guard let port = Int(String(decoding: line, as: UTF8.self)) else {
            kill(process.processIdentifier, SIGKILL)
            throw BitbucketError(code: .configuration, message: "helper did not report a port")
        }
        self.port = port
    }

    /// Lines the helper printed after the port (it must have flushed them).
    func stop() -> [String] {
        // SIGKILL, not terminate(): children of the test runner may inherit a mask that blocks SIGTERM.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let rest = (try? output.readToEnd()) ?? Data()
        return String(decoding: rest, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}

private let userJSON = #"{"type":"user","uuid":"{u}","nickname":"tls-user","display_name":"TLS"}"#

@Suite("Transport configuration: CA bundle and proxy")
struct TransportConfigurationTests {
    static let toolsAvailable = which("openssl") != nil && which("python3") != nil

    /// Makes a CA and a server certificate for 127.0.0.1 signed by it.
    private func makeCertificates(in dir: URL) async throws {
        let openssl = which("openssl")!
        func ssl(_ arguments: [String]) async throws {
            let (status, _, stderr) = try await runOffPool(openssl, arguments)
            #expect(status == 0, "openssl \(arguments.first ?? ""): \(stderr)")
        }
        let path = { (name: String) in dir.appendingPathComponent(name).path }
        try await ssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("ca.key"), "-out", path("ca.pem"), "-days", "2", "-subj", "/CN=pushbridge test CA"])
        try await ssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", path("server.key"), "-out", path("server.csr"), "-subj", "/CN=127.0.0.1"])
        try "subjectAltName=IP:127.0.0.1\n".write(toFile: path("san.ext"), atomically: true, encoding: .utf8)
        try await ssl(["x509", "-req", "-in", path("server.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"), "-CAcreateserial", "-out", path("server.pem"), "-days", "2", "-extfile", path("san.ext")])
    }

    private static let tlsServer = """
        import http.server, ssl, sys
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = sys.argv[3].encode()
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *a): pass
        s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
        s.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])
        # Handshake in the handler thread, so a client that rejects the certificate blocks nothing.
        s.socket = ctx.wrap_socket(s.socket, server_side=True, do_handshake_on_connect=False)
        print(s.server_address[1], flush=True)
        s.serve_forever()
        """

    @Test(.enabled(if: toolsAvailable, "needs openssl and python3"))
    func customCABundleIsTrusted() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try await makeCertificates(in: dir)
        // The helper's start waits for its port line with a blocking read: off the cooperative pool.
        let server = try await offCooperativePool {
            try HelperProcess(
                python: Self.tlsServer,
                arguments: [dir.appendingPathComponent("server.pem").path, dir.appendingPathComponent("server.key").path, userJSON]
            )
        }
        defer { _ = server.stop() }
        let endpoints = CloudEndpoints(apiBaseURL: URL(string: "https://127.0.0.1:\(server.port)/2.0")!)

        // Without the bundle the private CA is unknown: a TLS error, not retried.
        let sleeper = RecordingSleeper()
        // AsyncHTTPClient re-dials failed handshakes until the connect timeout; keep it short.
        try await withTransport(.init(connectTimeout: .milliseconds(500))) { transport in
            let client = CloudClient(endpoints: endpoints, credentials: StaticCredentialProvider(.bearer(Secret("t"))), transport: transport, options: testOptions(sleeper: sleeper))
            let error = await #expect(throws: BitbucketError.self) { try await client.currentUser() }
            #expect(error?.code == .tls)
            #expect(error?.retryable == false)
            #expect(sleeper.recorded.isEmpty)
        }
        // With it, the same request succeeds.
        try await withTransport(.init(caBundlePath: dir.appendingPathComponent("ca.pem").path)) { transport in
            let client = CloudClient(endpoints: endpoints, credentials: StaticCredentialProvider(.bearer(Secret("t"))), transport: transport, options: testOptions())
            let user = try await client.currentUser()
            #expect(user.username == "tls-user")
        }
    }

    @Test func unreadableCABundleIsAConfigurationError() throws {
        let error = #expect(throws: BitbucketError.self) {
            _ = try BitbucketHTTPTransport(configuration: .init(caBundlePath: "/nonexistent/ca.pem"))
        }
        #expect(error?.code == .configuration)
    }

    /// A minimal HTTP proxy: CONNECT tunnels (what AsyncHTTPClient uses) and absolute-form GETs.
    private static let forwardProxy = """
        import http.server, select, socket, sys, urllib.request
        class P(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'
            def do_CONNECT(self):
                print('PROXIED CONNECT', self.path, self.headers.get('Proxy-Authorization', '-'), flush=True)
                host, port = self.path.rsplit(':', 1)
                upstream = socket.create_connection((host, int(port)))
                self.send_response(200, 'Connection Established')
                self.end_headers()
                self.wfile.flush()
                sockets = [self.connection, upstream]
                while True:
                    readable, _, _ = select.select(sockets, [], [], 10)
                    if not readable:
                        break
                    done = False
                    for s in readable:
                        data = s.recv(65536)
                        if not data:
                            done = True
                            break
                        (upstream if s is self.connection else self.connection).sendall(data)
                    if done:
                        break
                upstream.close()
                self.close_connection = True
            def do_GET(self):
                print('PROXIED GET', self.path, self.headers.get('Proxy-Authorization', '-'), flush=True)
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                req = urllib.request.Request(self.path, headers={k: v for k, v in self.headers.items() if k.lower() not in ('proxy-authorization', 'host', 'connection')})
                with opener.open(req) as r:
                    body = r.read()
                    self.send_response(r.status)
                    self.send_header('Content-Type', r.headers.get('Content-Type', 'application/json'))
                    self.send_header('Content-Length', str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
            def log_message(self, *a): pass
        s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), P)
        s.daemon_threads = True
        print(s.server_address[1], flush=True)
        s.serve_forever()
        """

    @Test(.enabled(if: which("python3") != nil, "needs python3"))
    func requestsGoThroughTheConfiguredProxy() async throws {
        try await withScriptedServer({ _, _ in .json(200, userJSON) }) { server in
            let proxy = try await offCooperativePool { try HelperProcess(python: Self.forwardProxy, arguments: []) }
            var stopped = false
            defer { if !stopped { _ = proxy.stop() } }
            let configuration = HTTPTransportConfiguration(proxy: try ProxyConfiguration(url: "http://pb-user:pb%20pass@127.0.0.1:\(proxy.port)"))
            try await withTransport(configuration) { transport in
                let client = CloudClient(
                    endpoints: CloudEndpoints(apiBaseURL: server.baseURL.appendingPathComponent("2.0")),
                    credentials: StaticCredentialProvider(.bearer(Secret("t"))),
                    transport: transport,
                    options: testOptions()
                )
                let user = try await client.currentUser()
                #expect(user.username == "tls-user")
            }
            stopped = true
            let lines = proxy.stop()
            let expectedAuth = "Basic " + Data("pb-user:pb pass".utf8).base64EncodedString()
            let target = "\(server.baseURL.host ?? ""):\(server.baseURL.port ?? 0)"
            #expect(lines.contains("PROXIED CONNECT \(target) \(expectedAuth)") || lines.contains("PROXIED GET \(server.baseURL.absoluteString)/2.0/user \(expectedAuth)"), "proxy saw: \(lines)")
            #expect(server.requests.count == 1)
            #expect(server.requests.first?.headers["authorization"] == "Bearer t")
        }
    }

    @Test func proxyURLParsing() throws {
        let proxy = try ProxyConfiguration(url: "http://user:p%40ss@proxy.internal:3128")
        #expect(proxy.host == "proxy.internal")
        #expect(proxy.port == 3128)
        #expect(proxy.username == "user")
        #expect(proxy.password?.reveal() == "p@ss")
        #expect(try ProxyConfiguration(url: "proxy.internal").port == 3128)
        #expect(try ProxyConfiguration(url: "https://proxy.internal").port == 443)
        #expect(throws: BitbucketError.self) { try ProxyConfiguration(url: "socks5://proxy.internal:1080") }
    }
}
