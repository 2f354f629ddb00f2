/// Colony's framing on TCP (`colony://`), as pure functions: a connection starts with `hello`
/// from each side, then carries frames of a 4-byte payload length and an 8-byte id (both
/// little-endian) followed by the payload. A reply carries its request's id.
public enum FrameFormat {
    /// The first bytes each side sends: the protocol and its version. nng's peers open with
    /// `00 53 50 00` ("\0SP\0"), so a `tcp://` peer on a `colony://` port (or the other way
    /// round) is told apart at once.
    public static let hello: [UInt8] = Array("COLONY/1".utf8)
    public static let headerBytes = 12

    public struct Frame: Sendable, Equatable {
        public var id: UInt64
        public var payload: [UInt8]

        public init(id: UInt64, payload: [UInt8]) {
            self.id = id
            self.payload = payload
        }
    }

    /// Appends one frame to `bytes`.
    public static func append(id: UInt64, _ payload: [UInt8], to bytes: inout [UInt8]) {
        bytes.reserveCapacity(bytes.count + headerBytes + payload.count)
        let length = UInt32(truncatingIfNeeded: payload.count)
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: length >> UInt32(shift))) }
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: id >> UInt64(shift))) }
        bytes += payload
    }

    /// The whole frames at the start of `bytes` and how many bytes they take; throws for a
    /// frame announced larger than `frameBytesMax` (the connection is then of no use).
    public static func split(_ bytes: [UInt8], frameBytesMax: Int) throws(SocketError) -> (frames: [Frame], used: Int) {
        var frames: [Frame] = []
        var at = 0
        while bytes.count - at >= headerBytes {
            var length = 0
            for i in 0..<4 { length |= Int(bytes[at + i]) << (8 * i) }
            guard length <= frameBytesMax else { throw SocketError("read a frame", .frameTooLarge(length, frameBytesMax)) }
            guard bytes.count - at - headerBytes >= length else { break }
            var id: UInt64 = 0
            for i in 0..<8 { id |= UInt64(bytes[at + 4 + i]) << (8 * UInt64(i)) }
            frames.append(Frame(id: id, payload: Array(bytes[(at + headerBytes)..<(at + headerBytes + length)])))
            at += headerBytes + length
        }
        return (frames, at)
    }
}
