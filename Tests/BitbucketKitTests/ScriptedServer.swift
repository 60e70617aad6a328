import BitbucketKit
import Foundation
import TestSupport
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// A request as the local test server saw it.
struct RecordedRequest: Sendable {
    var method: String
    var path: String
    var query: String?
    /// Header names lower-cased; repeated headers joined with ", ".
    var headers: [String: String]
    var body: [UInt8]

    var bodyString: String { String(decoding: body, as: UTF8.self) }

    /// Decoded query items (form rules: `+` is a space).
    var queryItems: [String: String] {
        var result: [String: String] = [:]
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (s: Substring) in s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s) }
            result[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return result
    }

    var formItems: [String: String] {
        RecordedRequest(method: method, path: path, query: bodyString, headers: headers, body: []).queryItems
    }

    var jsonBody: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
    }
}

/// What the test server answers.
struct ScriptedResponse: Sendable {
    var status: Int
    var headers: [(String, String)]
    var body: String

    static func json(_ status: Int = 200, _ body: String, headers: [(String, String)] = []) -> ScriptedResponse {
        ScriptedResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: body)
    }

    static func text(_ status: Int, _ body: String, headers: [(String, String)] = []) -> ScriptedResponse {
        ScriptedResponse(status: status, headers: [("Content-Type", "text/plain")] + headers, body: body)
    }
}

/// A real HTTP server on 127.0.0.1 (Hummingbird) whose answers come from a closure; records every
/// request. Runs for the duration of `withScriptedServer`.
final class ScriptedServer: Sendable {
    let baseURL: URL
    private let box: RequestBox

    init(baseURL: URL, box: RequestBox) {
        self.baseURL = baseURL
        self.box = box
    }

    var requests: [RecordedRequest] { box.recorded.withLock { $0 } }

    func requests(path: String) -> [RecordedRequest] { requests.filter { $0.path == path } }
}

final class RequestBox: Sendable {
    let recorded = Mutex<[RecordedRequest]>([])
}

/// Runs `body` with a live server whose responses come from `handler(request, indexOfRequest)`.
func withScriptedServer<T: Sendable>(
    _ handler: @escaping @Sendable (RecordedRequest, Int) async -> ScriptedResponse,
    _ body: (ScriptedServer) async throws -> T
) async throws -> T {
    let box = RequestBox()
    let responder = CallbackResponder<BasicRequestContext> { request, _ in
        var headers: [String: String] = [:]
        for field in request.headers {
            let name = field.name.canonicalName
            headers[name] = headers[name].map { "\($0), \(field.value)" } ?? field.value
        }
        let bytes = try await request.body.collect(upTo: 4 * 1024 * 1024)
        let recordedRequest = RecordedRequest(
            method: request.method.rawValue,
            path: request.uri.path,
            query: request.uri.query,
            headers: headers,
            body: Array(bytes.readableBytesView)
        )
        let index = box.recorded.withLock { list in
            list.append(recordedRequest)
            return list.count - 1
        }
        let scripted = await handler(recordedRequest, index)
        var fields = HTTPFields()
        for (name, value) in scripted.headers {
            if let fieldName = HTTPField.Name(name) { fields.append(HTTPField(name: fieldName, value: value)) }
        }
        return Response(
            status: HTTPResponse.Status(code: scripted.status),
            headers: fields,
            body: ResponseBody(byteBuffer: ByteBuffer(string: scripted.body))
        )
    }
    let (portStream, portContinuation) = AsyncStream<Int>.makeStream()
    var logger = Logger(label: "scripted-server")
    logger.logLevel = .critical
    let app = Application(
        responder: responder,
        configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { channel in
            portContinuation.yield(channel.localAddress?.port ?? 0)
            portContinuation.finish()
        },
        logger: logger
    )
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await app.run() }
        var iterator = portStream.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else {
            group.cancelAll()
            throw BitbucketError(code: .configuration, message: "test server did not start")
        }
        let server = ScriptedServer(baseURL: URL(string: "http://127.0.0.1:\(port)")!, box: box)
        do {
            let result = try await body(server)
            group.cancelAll()
            return result
        } catch {
            group.cancelAll()
            throw error
        }
    }
}

/// Records requested retry delays and returns at once.
final class RecordingSleeper: RetrySleeper {
    private let delays = Mutex<[Duration]>([])
    var recorded: [Duration] { delays.withLock { $0 } }
    func sleep(for duration: Duration) async throws {
        delays.withLock { $0.append(duration) }
    }
}

/// A credential provider that hands out `tokens[n]` on the n-th call and records `forceRefresh`.
final class SequenceCredentialProvider: CredentialProvider {
    private let state = Mutex<(calls: [Bool], index: Int)>(([], 0))
    let tokens: [String]

    init(_ tokens: [String]) {
        self.tokens = tokens
    }

    var calls: [Bool] { state.withLock { $0.calls } }

    func authorization(forceRefresh: Bool) async throws -> Authorization {
        let token = state.withLock { state -> String in
            state.calls.append(forceRefresh)
            let token = tokens[min(state.index, tokens.count - 1)]
            state.index += 1
            return token
        }
        return .bearer(Secret(token))
    }
}

/// Options for tests: tiny backoff, recording sleeper, logger into `InMemoryLogHandler` if given.
func testOptions(
    sleeper: RecordingSleeper = RecordingSleeper(),
    maxAttempts: Int = 4,
    logger: Logger? = nil
) -> BitbucketClientOptions {
    BitbucketClientOptions(
        requestTimeout: .seconds(10),
        retry: RetryPolicy(maxAttempts: maxAttempts, initialBackoff: .milliseconds(1), maxBackoff: .milliseconds(5), maxTotalTime: .seconds(60)),
        logger: logger ?? Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
        sleeper: sleeper
    )
}

/// Runs `body` with a fresh transport and shuts it down afterwards.
func withTransport<T: Sendable>(
    _ configuration: HTTPTransportConfiguration = .init(),
    _ body: (BitbucketHTTPTransport) async throws -> T
) async throws -> T {
    let transport = try BitbucketHTTPTransport(configuration: configuration)
    do {
        let result = try await body(transport)
        try await transport.shutdown()
        return result
    } catch {
        try? await transport.shutdown()
        throw error
    }
}

/// `../shared` relative to the package root, or nil when absent.
func sharedDirectory() -> URL? {
    let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let shared = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
    return FileManager.default.fileExists(atPath: shared.path) ? shared : nil
}

/// ``run(_:_:stdin:environment:)`` waited for on a thread of its own, so the suite's other tasks
/// keep the cooperative pool (it blocks in `readDataToEndOfFile`/`waitUntilExit`).
@discardableResult
func runOffPool(_ executable: String, _ arguments: [String], stdin: Data? = nil, environment: [String: String]? = nil) async throws -> (Int32, String, String) {
    try await offCooperativePool { try run(executable, arguments, stdin: stdin, environment: environment) }
}

/// Runs a process to completion; returns (status, stdout, stderr). Blocks the calling thread.
@discardableResult
func run(_ executable: String, _ arguments: [String], stdin: Data? = nil, environment: [String: String]? = nil) throws -> (Int32, String, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let out = Pipe()
    let err = Pipe()
    let input = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(stdin) }
    try input.fileHandleForWriting.close()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// Finds an executable on PATH.
func which(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    return nil
}

func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("bbkit-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
