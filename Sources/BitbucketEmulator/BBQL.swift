import Foundation

/// A subset of Bitbucket Cloud's query language (`q=`), evaluated against a resource's JSON rendering.
///
/// Supported: `field OP value` with `=`, `!=`, `~` (case-insensitive contains), `!~`, `>`, `>=`, `<`, `<=`;
/// `AND`, `OR` (case-insensitive), parentheses; values as double-quoted strings (with `\"` escapes), numbers,
/// `true`, `false`, `null`. Fields are dotted paths (`source.branch.name`). Written by hand: no listed library
/// parses BBQL.
struct BBQLQuery: Sendable {
    indirect enum Node: Sendable {
        case comparison(field: [String], op: String, value: JSONValue)
        case and(Node, Node)
        case or(Node, Node)
    }

    struct ParseError: Error {
        let message: String
    }

    let root: Node

    init(_ text: String) throws(ParseError) {
        var parser = Parser(tokens: try Self.tokenize(text))
        root = try parser.parseOr()
        guard parser.atEnd else { throw ParseError(message: "unexpected token \(parser.peekDescription)") }
    }

    func matches(_ value: JSONValue) -> Bool { Self.evaluate(root, value) }

    /// True when any comparison in the query names `field`.
    func mentions(_ field: String) -> Bool {
        func walk(_ n: Node) -> Bool {
            switch n {
            case .comparison(let f, _, _): return f.joined(separator: ".") == field
            case .and(let a, let b), .or(let a, let b): return walk(a) || walk(b)
            }
        }
        return walk(root)
    }

    private static func evaluate(_ node: Node, _ value: JSONValue) -> Bool {
        switch node {
        case .and(let a, let b): return evaluate(a, value) && evaluate(b, value)
        case .or(let a, let b): return evaluate(a, value) || evaluate(b, value)
        case .comparison(let field, let op, let expected):
            var current: JSONValue? = value
            for key in field { current = current?[key] }
            let actual = current ?? .null
            switch op {
            case "=": return equal(actual, expected)
            case "!=": return !equal(actual, expected)
            case "~", "!~":
                let contains: Bool = {
                    guard let a = text(actual), let e = text(expected) else { return false }
                    return a.lowercased().contains(e.lowercased())
                }()
                return op == "~" ? contains : !contains
            default:
                guard let ordering = compare(actual, expected) else { return false }
                switch op {
                case ">": return ordering > 0
                case ">=": return ordering >= 0
                case "<": return ordering < 0
                default: return ordering <= 0
                }
            }
        }
    }

    private static func text(_ v: JSONValue) -> String? {
        switch v {
        case .string(let s): return s
        case .number(let d): return d.rounded() == d ? String(Int64(d)) : String(d)
        case .bool(let b): return b ? "true" : "false"
        default: return nil
        }
    }

    private static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool {
        if a == b { return true }
        // BBQL compares a quoted value against numbers/booleans by text, e.g. id = "3".
        if let ta = text(a), let tb = text(b) { return ta == tb }
        return false
    }

    private static func compare(_ a: JSONValue, _ b: JSONValue) -> Int? {
        if case .number(let x) = a, case .number(let y) = b { return x < y ? -1 : (x > y ? 1 : 0) }
        guard let x = text(a), let y = text(b) else { return nil }
        return x < y ? -1 : (x > y ? 1 : 0)
    }

    // MARK: Lexer and parser

    enum Token: Sendable, Equatable {
        case ident(String)
        case op(String)
        case string(String)
        case number(Double)
        case lparen, rparen
    }

    private static func tokenize(_ text: String) throws(ParseError) -> [Token] {
        var tokens: [Token] = []
        let chars = Array(text)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c.isWhitespace {
                i += 1
            } else if c == "(" {
                tokens.append(.lparen)
                i += 1
            } else if c == ")" {
                tokens.append(.rparen)
                i += 1
            } else if c == "\"" {
                var s = ""
                i += 1
                var closed = false
                while i < chars.count {
                    if chars[i] == "\\", i + 1 < chars.count {
                        s.append(chars[i + 1])
                        i += 2
                    } else if chars[i] == "\"" {
                        closed = true
                        i += 1
                        break
                    } else {
                        s.append(chars[i])
                        i += 1
                    }
                }
                guard closed else { throw ParseError(message: "unterminated string") }
                tokens.append(.string(s))
            } else if "=!~<>".contains(c) {
                var op = String(c)
                if i + 1 < chars.count, "=~".contains(chars[i + 1]), c != "~", c != "=" {
                    op.append(chars[i + 1])
                }
                guard ["=", "!=", "~", "!~", ">", ">=", "<", "<="].contains(op) else {
                    throw ParseError(message: "unknown operator \(op)")
                }
                tokens.append(.op(op))
                i += op.count
            } else if c.isNumber || (c == "-" && i + 1 < chars.count && chars[i + 1].isNumber) {
                var s = String(c)
                i += 1
                while i < chars.count, chars[i].isNumber || chars[i] == "." {
                    s.append(chars[i])
                    i += 1
                }
                guard let d = Double(s) else { throw ParseError(message: "bad number \(s)") }
                tokens.append(.number(d))
            } else if c.isLetter || c == "_" {
                var s = ""
                while i < chars.count, chars[i].isLetter || chars[i].isNumber || "_.:-".contains(chars[i]) {
                    s.append(chars[i])
                    i += 1
                }
                tokens.append(.ident(s))
            } else {
                throw ParseError(message: "unexpected character \(c)")
            }
        }
        return tokens
    }

    private struct Parser {
        let tokens: [Token]
        var index = 0

        init(tokens: [Token]) { self.tokens = tokens }

        var atEnd: Bool { index >= tokens.count }
        var peekDescription: String { atEnd ? "end of query" : "\(tokens[index])" }

        mutating func keyword(_ k: String) -> Bool {
            if !atEnd, case .ident(let s) = tokens[index], s.uppercased() == k {
                index += 1
                return true
            }
            return false
        }

        mutating func parseOr() throws(ParseError) -> Node {
            var left = try parseAnd()
            while keyword("OR") { left = .or(left, try parseAnd()) }
            return left
        }

        mutating func parseAnd() throws(ParseError) -> Node {
            var left = try parsePrimary()
            while keyword("AND") { left = .and(left, try parsePrimary()) }
            return left
        }

        mutating func parsePrimary() throws(ParseError) -> Node {
            guard !atEnd else { throw ParseError(message: "unexpected end of query") }
            if tokens[index] == .lparen {
                index += 1
                let inner = try parseOr()
                guard !atEnd, tokens[index] == .rparen else { throw ParseError(message: "missing )") }
                index += 1
                return inner
            }
            guard case .ident(let field) = tokens[index] else {
                throw ParseError(message: "expected a field name, found \(tokens[index])")
            }
            index += 1
            guard !atEnd, case .op(let op) = tokens[index] else { throw ParseError(message: "expected an operator") }
            index += 1
            guard !atEnd else { throw ParseError(message: "expected a value") }
            let value: JSONValue
            switch tokens[index] {
            case .string(let s): value = .string(s)
            case .number(let d): value = .number(d)
            case .ident(let s) where s == "true": value = .bool(true)
            case .ident(let s) where s == "false": value = .bool(false)
            case .ident(let s) where s == "null": value = .null
            default: throw ParseError(message: "expected a value, found \(tokens[index])")
            }
            index += 1
            return .comparison(field: field.split(separator: ".").map(String.init), op: op, value: value)
        }
    }
}
