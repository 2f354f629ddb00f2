import ColonyModel
import ColonyWire
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Length-prefixed frames (`LengthPrefix`) on a pipe.
/// A zero-length frame from a child means "ready". A child's live output (an OutputChunk)
/// travels in a frame whose length has `outputFlag` set, between its task and its result.
enum Frames {
    static let bytesMax = colonyMessageBytesMax
    static let outputFlag: UInt32 = 1 << 31

    /// Writes one frame; false if the pipe is closed.
    static func write(_ bytes: [UInt8], to fd: Int32, output: Bool = false) -> Bool {
        writeAll(LengthPrefix.header(bytes.count | (output ? Int(outputFlag) : 0)) + bytes, to: fd)
    }

    /// Reads one frame; nil at end-of-file, on an error or an oversized length.
    static func read(from fd: Int32) -> [UInt8]? {
        guard let (bytes, output) = readTagged(from: fd), !output else { return nil }
        return bytes
    }

    /// Reads one frame and whether it is output (see `outputFlag`).
    static func readTagged(from fd: Int32) -> (bytes: [UInt8], output: Bool)? {
        guard let header = readExactly(LengthPrefix.headerBytes, from: fd) else { return nil }
        let word = UInt32(LengthPrefix.length(header))
        let length = Int(word & ~outputFlag)
        guard length <= bytesMax else { return nil }
        if length == 0 { return ([], word & outputFlag != 0) }
        return readExactly(length, from: fd).map { ($0, word & outputFlag != 0) }
    }

    private static func writeAll(_ bytes: [UInt8], to fd: Int32) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += written
        }
        return true
    }

    private static func readExactly(_ count: Int, from fd: Int32) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let got = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + offset, count - offset) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { return nil }
            offset += got
        }
        return buffer
    }
}
