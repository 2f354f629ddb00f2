import CSQLite
import ColonyCore
import ColonyModel
import Foundation
import Synchronization

/// Lists of strings in one blob: each length-prefixed (`LengthPrefix`), as UTF-8.
enum Strings {
    static func encode(_ strings: [String]) -> [UInt8] {
        var bytes: [UInt8] = []
        for string in strings {
            let utf8 = Array(string.utf8)
            bytes += LengthPrefix.header(utf8.count)
            bytes += utf8
        }
        return bytes
    }

    static func decode(_ bytes: [UInt8]) -> [String] {
        var strings: [String] = []
        var offset = 0
        while offset + LengthPrefix.headerBytes <= bytes.count {
            let length = LengthPrefix.length(bytes, at: offset)
            offset += LengthPrefix.headerBytes
            guard offset + length <= bytes.count else { break }
            strings.append(String(decoding: bytes[offset..<offset + length], as: UTF8.self))
            offset += length
        }
        return strings
    }
}

/// Lists of task ids in one blob, 8 bytes each (little-endian).
enum IDs {
    static func encode(_ ids: [TaskID]) -> [UInt8] {
        ids.flatMap { id in (0..<8).map { UInt8(truncatingIfNeeded: id >> (8 * $0)) } }
    }

    static func decode(_ bytes: [UInt8]) -> [TaskID] {
        stride(from: 0, to: bytes.count - bytes.count % 8, by: 8).map { start in
            (0..<8).reduce(TaskID(0)) { $0 | TaskID(bytes[start + $1]) << (8 * $1) }
        }
    }
}
