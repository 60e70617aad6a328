import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import PushBridge

/// An error answered by a running daemon (its `{"error": {"code", "message"}}`), or a transport failure.
public struct APIClientError: CodedError {
    public let code: String
    public let message: String
    /// HTTP status, `0` when the daemon could not be reached.
    public let status: Int
}

/// Talks to a running pushbridge daemon over its HTTP API (used by the CLI's client commands).
///
/// The bearer token is sent only in the `Authorization` header; it is never part of a URL,
/// an error or a log line.
public struct APIClient: Sendable {
    public let baseURL: String
    private let token: Redacted<String>
    private let http: HTTPClient

    /// - Parameters:
    ///   - baseURL: `http://127.0.0.1:8080` (no trailing slash needed).
    ///   - token: One of the daemon's `PUSHBRIDGE_API_TOKENS`.
    public init(baseURL: String, token: String, http: HTTPClient = .shared) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.token = Redacted(token)
        self.http = http
    }

    /// Sends a request and returns the JSON body (empty `Data` for 204).
    ///
    /// - Throws: ``APIClientError`` for non-2xx answers (with the daemon's code) and transport errors.
    public func send(
        _ method: HTTPMethod, _ path: String, json: Data? = nil, body: HTTPClientRequest.Body? = nil,
        headers extra: [(String, String)] = []
    ) async throws -> Data {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token.value)")
        request.headers.add(name: "Accept", value: "application/json")
        for (name, value) in extra { request.headers.add(name: name, value: value) }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: json))
        } else if let body {
            request.headers.add(name: "Content-Type", value: "application/octet-stream")
            request.body = body
        }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: .seconds(300))
        } catch {
            throw APIClientError(code: "unreachable", message: "cannot reach \(baseURL): \(error)", status: 0)
        }
        let data = Data(buffer: try await response.body.collect(upTo: 64 << 20))
        guard (200..<300).contains(response.status.code) else {
            let envelope = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            let error = envelope?["error"] as? [String: Any]
            throw APIClientError(
                code: error?["code"] as? String ?? "http_\(response.status.code)",
                message: error?["message"] as? String ?? response.status.reasonPhrase, status: Int(response.status.code))
        }
        return data
    }

    /// `GET path` decoded as a JSON object.
    public func object(_ method: HTTPMethod = .GET, _ path: String, json: Data? = nil, headers: [(String, String)] = [])
        async throws -> [String: Any]
    {
        let data = try await send(method, path, json: json, headers: headers)
        return (try JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
    }

    /// Uploads an archive file (streamed from disk) and returns the daemon's answer.
    public func uploadArchive(path: String) async throws -> [String: Any] {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        let size = Int(try handle.seekToEnd())
        try handle.seek(toOffset: 0)
        // Pulled chunk by chunk as the upload proceeds: the archive is never held in memory.
        let chunks = AsyncThrowingStream<ByteBuffer, any Error> {
            let data = try handle.read(upToCount: 256 * 1024) ?? Data()
            return data.isEmpty ? nil : ByteBuffer(bytes: data)
        }
        let data = try await send(.POST, "/v1/archives", body: .stream(chunks, length: .known(Int64(size))))
        return (try JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
    }
}
