/// The one framing Colony writes outside protobuf: a 4-byte little-endian length, then that
/// many bytes. Process-pool pipes carry frames in it; the journal packs string lists in it.
public enum LengthPrefix {
    /// Bytes in a header.
    public static let headerBytes = 4

    /// The header announcing `count` bytes.
    public static func header(_ count: Int) -> [UInt8] {
        let length = UInt32(truncatingIfNeeded: count)
        return [UInt8(length & 0xFF), UInt8((length >> 8) & 0xFF), UInt8((length >> 16) & 0xFF), UInt8(length >> 24)]
    }

    /// The length a header announces; `bytes` holds it at `offset`.
    public static func length(_ bytes: some RandomAccessCollection<UInt8>, at offset: Int = 0) -> Int {
        let start = bytes.index(bytes.startIndex, offsetBy: offset)
        let byte = { (index: Int) in Int(bytes[bytes.index(start, offsetBy: index)]) }
        return byte(0) | byte(1) << 8 | byte(2) << 16 | byte(3) << 24
    }
}
