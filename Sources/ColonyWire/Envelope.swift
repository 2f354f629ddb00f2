import Foundation
import SwiftProtobuf

/// The protocol version this build speaks. A peer sending another version gets
/// `CODE_UNSUPPORTED_VERSION`.
public let colonyProtocolVersion: UInt32 = 1

/// Largest envelope a Colony socket accepts by default (16 MiB). Senders split batches to
/// stay well under it.
public let colonyMessageBytesMax = 16 << 20

/// Why bytes could not be read as an envelope. The description is one line for users.
public enum WireError: Error, Sendable, Equatable, CustomStringConvertible {
    case malformed(String)
    case unsupportedVersion(UInt32)
    case tooLarge(bytes: Int, limit: Int)
    case emptyBody

    public var description: String {
        switch self {
        case .malformed(let why): "malformed message: \(why)"
        case .unsupportedVersion(let v): "unsupported protocol version \(v) (this build speaks \(colonyProtocolVersion))"
        case .tooLarge(let bytes, let limit): "message of \(bytes) bytes exceeds the limit of \(limit) bytes"
        case .emptyBody: "message has no body"
        }
    }

    /// The error code a coordinator answers with.
    public var replyCode: Colony_V1_ErrorReply.Code {
        switch self {
        case .malformed, .emptyBody: .malformed
        case .unsupportedVersion: .unsupportedVersion
        case .tooLarge: .tooLarge
        }
    }
}

/// Encoding and decoding of envelopes: the only place that turns bytes into messages.
public enum Wire {
    /// Wraps `body` in an envelope of the current version and serializes it.
    public static func encode(_ body: Colony_V1_Envelope.OneOf_Body, token: String = "") -> [UInt8] {
        var envelope = Colony_V1_Envelope()
        envelope.version = colonyProtocolVersion
        envelope.token = token
        envelope.body = body
        // Serializing a message built in memory only fails for missing required fields, which
        // proto3 does not have.
        return (try? envelope.serializedBytes()) ?? []
    }

    /// Parses bytes into an envelope, checking size, version and that a body is present.
    public static func decode(_ bytes: [UInt8], limit: Int = colonyMessageBytesMax) throws(WireError) -> Colony_V1_Envelope {
        if bytes.count > limit { throw .tooLarge(bytes: bytes.count, limit: limit) }
        let envelope: Colony_V1_Envelope
        do {
            envelope = try Colony_V1_Envelope(serializedBytes: bytes)
        } catch {
            throw .malformed("not a colony.v1 envelope (\(bytes.count) bytes)")
        }
        guard envelope.version == colonyProtocolVersion else { throw .unsupportedVersion(envelope.version) }
        guard envelope.body != nil else { throw .emptyBody }
        return envelope
    }

    /// An encoded error reply.
    public static func errorReply(_ code: Colony_V1_ErrorReply.Code, _ message: String) -> [UInt8] {
        encode(errorBody(code, message))
    }

    /// An error reply's body.
    public static func errorBody(_ code: Colony_V1_ErrorReply.Code, _ message: String) -> Colony_V1_Envelope.OneOf_Body {
        var reply = Colony_V1_ErrorReply()
        reply.code = code
        reply.message = message
        return .error(reply)
    }
}
