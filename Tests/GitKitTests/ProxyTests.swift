import Foundation
import GitKit
import Synchronization
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A loopback HTTP proxy that records request heads: it answers the first CONNECT with a
/// `407` Basic challenge and any request carrying `Proxy-Authorization` with `502`.
final class RecordingProxy: Sendable {
    let port: Int
    private let listener: Int32
    private let heads = Mutex<[String]>([])

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0, listen(fd, 8) == 0 else { throw POSIXError(.EADDRINUSE) }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        listener = fd
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    var requests: [String] { heads.withLock { $0 } }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func serve() {
        while true {
            let connection = accept(listener, nil, nil)
            if connection < 0 { return }
            handle(connection)
            close(connection)
        }
    }

    private func handle(_ connection: Int32) {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let got = chunk.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            if got <= 0 { return }
            buffer += chunk[..<got]
            while let end = buffer.firstRange(of: Array("\r\n\r\n".utf8)) {
                let head = String(decoding: buffer[..<end.lowerBound], as: UTF8.self)
                buffer.removeSubrange(..<end.upperBound)
                heads.withLock { $0.append(head) }
                let authorized = head.lowercased().contains("proxy-authorization:")
                let response =
                    authorized
                    ? "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    : "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n"
                _ = Array(response.utf8).withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if authorized { return }
            }
        }
    }
}

extension GitKitTests {
    @Suite("Proxy")
    struct ProxyTests {
        @Test("https traffic goes through the configured proxy, with URL credentials, which stay out of errors")
        func proxyIsUsed() async throws {
            let proxy = try RecordingProxy()
            defer { proxy.stop() }
            let data = try TemporaryDirectory()
            let store = GitCacheStore(dataDirectory: data.url.path)
            let cache = try store.cache(for: "https://git.example.invalid/ws/r.git")
            let secret = "proxy-Secret-99"
            let options = TransportOptions(proxy: .url("http://proxyuser:\(secret)@127.0.0.1:\(proxy.port)"))
            let error = await expectGitError { _ = try await cache.fetch(branches: ["main"], transport: options) }
            #expect(error?.code == .network)
            #expect(error?.description.contains(secret) == false)
            let requests = proxy.requests
            #expect(requests.first?.hasPrefix("CONNECT git.example.invalid:443 HTTP/1.1") == true)
            let basic = Data("proxyuser:\(secret)".utf8).base64EncodedString()
            #expect(requests.contains { $0.contains("Proxy-Authorization: Basic \(basic)") })
        }
    }
}
