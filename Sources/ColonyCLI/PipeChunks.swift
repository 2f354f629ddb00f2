import Colony
import ColonyModel
import ColonyWire

/// How `colony map --pipe` cuts its input: whole lines, by size or by count, each chunk
/// starting with the same header lines.
struct PipeChunks {
    enum Cut: Equatable {
        /// Whole lines up to this many bytes (one longer line makes a chunk of its own), as
        /// GNU parallel's `--block`.
        case bytes(Int)
        /// Every this many lines (GNU parallel's `-N`).
        case lines(Int)
    }

    /// One chunk: the header's bytes then a run of whole lines, and which lines they are.
    struct Chunk: Equatable {
        var bytes: [UInt8]
        /// 1-based numbers of its first and last line (header not counted).
        var firstLine: Int
        var lastLine: Int

        var label: String { firstLine == lastLine ? "line \(firstLine)" : "lines \(firstLine)-\(lastLine)" }
    }

    /// Largest chunk (header included): one task's input travels in one message, with room
    /// left for the command line and the message's own fields.
    static let chunkBytesMax = colonyMessageBytesMax - (64 << 10)

    /// `--block`'s default, as in GNU parallel.
    static let blockBytesDefault = 1 << 20

    /// Cuts `data` after `headerLines` header lines; throws one line naming the first chunk
    /// too large to travel.
    static func cut(_ data: [UInt8], by cut: Cut, headerLines: Int) throws -> [Chunk] {
        let newline = UInt8(ascii: "\n")
        var position = 0
        for _ in 0..<headerLines where position < data.count {
            position = data[position...].firstIndex(of: newline).map { $0 + 1 } ?? data.count
        }
        let header = data[..<position]
        var chunks: [Chunk] = []
        var line = 1
        while position < data.count {
            let start = position
            var lines = 0
            switch cut {
            case .bytes(let size):
                let end = start + size
                if end >= data.count {
                    position = data.count
                } else if let last = data[start..<end].lastIndex(of: newline) {
                    position = last + 1
                } else {
                    position = data[end...].firstIndex(of: newline).map { $0 + 1 } ?? data.count
                }
                lines = data[start..<position].reduce(0) { $0 + ($1 == newline ? 1 : 0) }
                if data[position - 1] != newline { lines += 1 }
            case .lines(let count):
                while lines < count && position < data.count {
                    position = data[position...].firstIndex(of: newline).map { $0 + 1 } ?? data.count
                    lines += 1
                }
            }
            let size = header.count + position - start
            guard size <= chunkBytesMax else {
                let label = Chunk(bytes: [], firstLine: line, lastLine: line + lines - 1).label
                throw CLIError("chunk \(chunks.count + 1) (\(label)) is \(size) bytes, over the \(chunkBytesMax) a task's input may be; use a smaller --block or -N")
            }
            var bytes = [UInt8]()
            bytes.reserveCapacity(size)
            bytes += header
            bytes += data[start..<position]
            chunks.append(Chunk(bytes: bytes, firstLine: line, lastLine: line + lines - 1))
            line += lines
        }
        return chunks
    }

    /// `1M`, `512k`, `2G` or a plain number of bytes.
    static func parseBytes(_ text: String, option: String) throws -> Int {
        let multipliers: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        var digits = text.uppercased()
        var multiplier = 1
        if let last = digits.last, let factor = multipliers[last] {
            multiplier = factor
            digits.removeLast()
        }
        guard let value = Int(digits), value > 0, value <= Int.max / multiplier else {
            throw CLIError("\(option) takes a number of bytes, e.g. 512K, 500M or 2G, got '\(text)'")
        }
        return value * multiplier
    }
}
