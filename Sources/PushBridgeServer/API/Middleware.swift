import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Prometheus

/// Turns every error (route, decoder, unknown path, other middleware) into the JSON error envelope
/// and logs failures without request bodies or credentials.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = PushBridgeRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch {
            let apiError = APIError.from(error)
            if apiError.status.code >= 500 {
                // The full error goes to the log only; the client sees the generic envelope.
                context.logger.error(
                    "request failed",
                    metadata: ["path": "\(request.uri.path)", "error": "\(error)", "code": "\(apiError.code)"])
            } else {
                context.logger.info(
                    "request refused",
                    metadata: ["path": "\(request.uri.path)", "status": "\(apiError.status.code)", "code": "\(apiError.code)"])
            }
            var headers: HTTPFields = [:]
            if apiError.status == .unauthorized { headers[.wwwAuthenticate] = #"Bearer realm="pushbridge""# }
            return ErrorBody(code: apiError.code, message: apiError.message).response(status: apiError.status, headers: headers)
        }
    }
}

/// Requires `Authorization: Bearer <token>` with one of the configured tokens.
///
/// Tokens are compared as SHA-256 digests with a constant-time comparison against *every*
/// configured token, so neither the position of a mismatch nor which token matched leaks through
/// timing. The token never reaches a log line: only ``APIPrincipal`` (its position) does.
struct BearerAuthMiddleware: RouterMiddleware {
    typealias Context = PushBridgeRequestContext
    private let digests: [SHA256.Digest]

    init(tokens: [String]) {
        self.digests = tokens.map { SHA256.hash(data: Data($0.utf8)) }
    }

    func authenticate(_ header: String?) -> APIPrincipal? {
        guard let header, header.count > 7, header.prefix(7).lowercased() == "bearer " else { return nil }
        let presented = SHA256.hash(data: Data(header.dropFirst(7).trimmingCharacters(in: .whitespaces).utf8))
        var match = 0
        for (index, digest) in digests.enumerated() {
            var difference: UInt8 = 0
            for (a, b) in zip(digest, presented) { difference |= a ^ b }
            // Branch-free select keeps the loop's timing independent of which token matched.
            let isEqual = Int(difference == 0 ? 1 : 0)
            match |= isEqual * (index + 1) * (match == 0 ? 1 : 0)
        }
        return match == 0 ? nil : APIPrincipal(tokenNumber: match)
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard let principal = authenticate(request.headers[.authorization]) else {
            let reason = request.headers[.authorization] == nil ? "missing bearer token" : "invalid bearer token"
            throw APIError(.unauthorized, code: "unauthorized", reason)
        }
        var context = context
        context.principal = principal
        context.logger[metadataKey: "principal"] = "\(principal)"
        return try await next(request, context)
    }
}

/// Counts requests and their latency per route (the matched pattern, not the raw path, so ids do
/// not explode the label space).
struct PrometheusMiddleware: RouterMiddleware {
    typealias Context = PushBridgeRequestContext
    let registry: PrometheusCollectorRegistry

    // Computed: MetricNameDescriptor is not Sendable, so it cannot be a stored static.
    static var requests: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "pushbridge", metricName: "http_requests", unitName: "total", helpText: "HTTP requests answered.")
    }
    static var latency: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "pushbridge", metricName: "http_request_duration", unitName: "seconds",
            helpText: "Time to answer HTTP requests.")
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let start = ContinuousClock.now
        let response = try await next(request, context)
        let route = context.endpointPath ?? "unmatched"
        let labels = [("method", request.method.rawValue), ("route", route), ("status", String(response.status.code))]
        registry.makeCounter(descriptor: Self.requests, labels: labels).increment()
        registry.makeDurationHistogram(
            descriptor: Self.latency, labels: [("method", request.method.rawValue), ("route", route)],
            buckets: [.milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(500), .seconds(2), .seconds(10)]
        ).recordNanoseconds((ContinuousClock.now - start).nanoseconds)
        return response
    }
}

extension Duration {
    var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
