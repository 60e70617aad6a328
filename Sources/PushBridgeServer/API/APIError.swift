import Foundation
import HTTPTypes
import Hummingbird
import PushBridge

/// An error answered to an API client as `{"error": {"code", "message"}}` with ``status``.
public struct APIError: CodedError, HTTPResponseError {
    public let status: HTTPResponse.Status
    public let code: String
    public let message: String

    public init(_ status: HTTPResponse.Status, code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    /// 400 `malformed_json`.
    static func malformedJSON(_ detail: String) -> APIError {
        APIError(.badRequest, code: "malformed_json", "request body is not valid JSON: \(detail)")
    }

    /// 422 `invalid_field` naming the field (dotted path, e.g. `source.directory`).
    static func invalidField(_ field: String, _ reason: String) -> APIError {
        APIError(.unprocessableContent, code: "invalid_field", "\(field): \(reason)")
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        ErrorBody(code: code, message: message).response(status: status)
    }
}

/// The JSON error envelope.
struct ErrorBody: Encodable {
    struct Inner: Encodable {
        let code: String
        let message: String
    }
    let error: Inner

    init(code: String, message: String) {
        self.error = Inner(code: code, message: message)
    }

    func response(status: HTTPResponse.Status, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json; charset=utf-8"
        let data = (try? JSONEncoder().encode(self)) ?? Data(#"{"error":{"code":"internal_error","message":""}}"#.utf8)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension APIError {
    /// Maps any error thrown by a route to the status, code and message the client sees.
    ///
    /// Domain errors keep their stable `code`; the status follows from it. Errors that are not
    /// ``CodedError`` become 500 `internal_error` with a generic message: their text may contain
    /// details (paths, SQL) that do not belong in a response, so they are only logged.
    static func from(_ error: any Error) -> APIError {
        switch error {
        case let error as APIError:
            return error
        case let error as StoreError:
            let status: HTTPResponse.Status = switch error.kind {
            case .notFound, .connectionNotFound: .notFound
            case .connectionExists, .idempotencyConflict, .invalidState, .leaseLost: .conflict
            case .invalidCursor: .unprocessableContent
            default: .internalServerError
            }
            return APIError(status, code: error.code, error.message)
        case let error as ArchiveError:
            let status: HTTPResponse.Status = switch error.kind {
            case .archiveTooLarge, .fileTooLarge, .tooManyEntries, .expandedTooLarge: .contentTooLarge
            case .notFound: .notFound
            case .io: .internalServerError
            default: .unprocessableContent
            }
            return APIError(status, code: error.code, error.message)
        case let error as HTTPError:
            let code: String = switch error.status {
            case .notFound: "not_found"
            case .contentTooLarge: "request_too_large"
            case .methodNotAllowed: "method_not_allowed"
            case .unauthorized: "unauthorized"
            case .badRequest: "bad_request"
            default: "http_\(error.status.code)"
            }
            let message = error.body ?? (error.status == .notFound ? "no such resource" : error.status.reasonPhrase)
            return APIError(error.status, code: code, message)
        case let error as any CodedError:
            return APIError(.internalServerError, code: error.code, error.message)
        default:
            return APIError(.internalServerError, code: "internal_error", "internal error")
        }
    }
}
