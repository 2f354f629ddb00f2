import Foundation

/// Reads an HTTP/1.x response from bytes as they arrive: the head first, then the body framed
/// by `Content-Length`, chunked transfer coding, or the connection's end. Pure (no I/O), so
/// that `fetch` can stop at its bound and tests can feed it any split.
struct HTTPResponseReader {
    struct Head: Equatable {
        var status: Int
        /// Lowercase names; a repeated header's values joined with ", ".
        var headers: [String: String]
    }

    enum Failure: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        case headTooLarge

        var description: String {
            switch self {
            case .malformed(let what): "malformed response: \(what)"
            case .headTooLarge: "response headers over \(HTTPResponseReader.headBytesMax) bytes"
            }
        }
    }

    /// Largest status line plus headers: a server sending more is not one `fetch` talks to.
    static let headBytesMax = 256 << 10

    private enum Framing {
        case length(Int)
        case chunked
        case untilClose
        case none
    }

    private enum ChunkState {
        case size
        case data(Int)
        case dataEnd
        case trailer
        case done
    }

    private var pending: [UInt8] = []
    private(set) var head: Head?
    private var framing = Framing.none
    private var chunkState = ChunkState.size
    private(set) var isComplete = false
    /// Whether the body has no bytes by rule (HEAD, 1xx, 204, 304).
    private let bodyless: (Int) -> Bool

    init(requestMethod: String) {
        let head = requestMethod.uppercased() == "HEAD"
        bodyless = { status in head || status < 200 || status == 204 || status == 304 }
    }

    /// Takes newly arrived bytes; returns the body bytes they complete.
    mutating func feed(_ bytes: [UInt8]) throws(Failure) -> [UInt8] {
        pending += bytes
        if head == nil {
            guard let end = Self.headEnd(pending) else {
                if pending.count > Self.headBytesMax { throw .headTooLarge }
                return []
            }
            guard end <= Self.headBytesMax else { throw .headTooLarge }
            let parsed = try Self.parseHead(pending[..<end])
            head = parsed
            pending.removeFirst(end)
            if bodyless(parsed.status) {
                framing = .none
            } else if parsed.headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
                framing = .chunked
            } else if let length = parsed.headers["content-length"] {
                guard let count = Int(length.trimmingCharacters(in: .whitespaces)), count >= 0 else { throw .malformed("Content-Length '\(length)'") }
                framing = .length(count)
            } else {
                framing = .untilClose
            }
            if case .none = framing { isComplete = true }
            if case .length(0) = framing { isComplete = true }
        }
        return try takeBody()
    }

    /// The server closed the connection; throws when the body was cut short.
    mutating func finish() throws(Failure) {
        if isComplete { return }
        guard head != nil else { throw .malformed("the connection closed before the response's headers ended") }
        if case .untilClose = framing {
            isComplete = true
            return
        }
        throw .malformed("the connection closed before the body ended")
    }

    private mutating func takeBody() throws(Failure) -> [UInt8] {
        switch framing {
        case .none:
            return []
        case .untilClose:
            defer { pending = [] }
            return pending
        case .length(let remaining):
            let taken = Array(pending.prefix(remaining))
            pending.removeFirst(taken.count)
            framing = .length(remaining - taken.count)
            if remaining == taken.count { isComplete = true }
            return taken
        case .chunked:
            return try takeChunks()
        }
    }

    private mutating func takeChunks() throws(Failure) -> [UInt8] {
        var body: [UInt8] = []
        var offset = 0
        defer { pending.removeFirst(offset) }
        while true {
            switch chunkState {
            case .size:
                guard let lineEnd = Self.lineEnd(pending, from: offset) else { return body }
                let line = String(decoding: pending[offset..<lineEnd], as: UTF8.self)
                let digits = line.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
                guard let size = Int(digits, radix: 16), size >= 0 else { throw .malformed("chunk size '\(line.prefix(40))'") }
                offset = lineEnd + 2
                chunkState = size == 0 ? .trailer : .data(size)
            case .data(let remaining):
                let available = min(remaining, pending.count - offset)
                if available == 0 { return body }
                body += pending[offset..<offset + available]
                offset += available
                chunkState = available == remaining ? .dataEnd : .data(remaining - available)
            case .dataEnd:
                guard pending.count - offset >= 2 else { return body }
                guard pending[offset] == 13, pending[offset + 1] == 10 else { throw .malformed("a chunk does not end with CRLF") }
                offset += 2
                chunkState = .size
            case .trailer:
                // Trailer fields are skipped; the empty line ends the body.
                guard let lineEnd = Self.lineEnd(pending, from: offset) else { return body }
                let empty = lineEnd == offset
                offset = lineEnd + 2
                if empty {
                    chunkState = .done
                    isComplete = true
                    return body
                }
            case .done:
                return body
            }
        }
    }

    /// Index of the CR of the first CRLF at or after `from`.
    private static func lineEnd(_ bytes: [UInt8], from: Int) -> Int? {
        var index = from
        while index + 1 < bytes.count {
            if bytes[index] == 13 && bytes[index + 1] == 10 { return index }
            index += 1
        }
        return nil
    }

    /// Where the head ends (just past its empty line), if it has arrived.
    private static func headEnd(_ bytes: [UInt8]) -> Int? {
        var index = 0
        while index + 3 < bytes.count {
            if bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 { return index + 4 }
            index += 1
        }
        return nil
    }

    private static func parseHead(_ bytes: ArraySlice<UInt8>) throws(Failure) -> Head {
        // On bytes, not Foundation strings: splitting the head as a String was a twentieth of
        // a small fetch's CPU time on the node.
        var lines: [ArraySlice<UInt8>] = []
        var start = bytes.startIndex
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if bytes[index] == 13, index + 1 < bytes.endIndex, bytes[index + 1] == 10 {
                if index > start { lines.append(bytes[start..<index]) }
                index += 2
                start = index
            } else {
                index += 1
            }
        }
        if start < bytes.endIndex { lines.append(bytes[start...]) }
        guard let first = lines.first else { throw .malformed("no status line") }
        let statusLine = String(decoding: first, as: UTF8.self)
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]), (100...999).contains(status) else {
            throw .malformed("status line '\(statusLine.prefix(80))'")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
                throw .malformed("header line '\(String(decoding: line, as: UTF8.self).prefix(80))'")
            }
            let name = String(decoding: line[..<colon], as: UTF8.self).lowercased()
            var value = line[(colon + 1)...]
            while let byte = value.first, byte == 32 || byte == 9 { value = value.dropFirst() }
            while let byte = value.last, byte == 32 || byte == 9 { value = value.dropLast() }
            let text = String(decoding: value, as: UTF8.self)
            headers[name] = headers[name].map { "\($0), \(text)" } ?? text
        }
        return Head(status: status, headers: headers)
    }
}
