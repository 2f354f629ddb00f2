import Foundation

/// The `batch` task (`map --chunk-size K`): one task carrying several inputs of one handler,
/// so that tiny inputs cost one message per chunk instead of one per input. The client builds
/// its input and splits its output; the node's `BatchHandler` runs it.
///
/// Input: `{"handler": "NAME", "inputs": [JSON, ...]}`. Output: a JSON array with one
/// `{"ok": true, "output": JSON}` or `{"ok": false, "error": "..."}` per input, in order.
public enum BatchFormat {
    /// The handler name batches travel under.
    public static let handlerName = "batch"
    /// Most inputs in one batch.
    public static let inputsMax = 100_000

    /// A batch output that is not a JSON array of entries.
    public struct Malformed: Error, Sendable, CustomStringConvertible {
        public var description: String { "a batch output is a JSON array of objects" }
    }

    /// The input of a batch of `handler` over `inputs` (each one JSON value already).
    public static func input(handler: String, inputs: some Collection<[UInt8]>) throws -> [UInt8] {
        var body = Array(#"{"handler":"#.utf8) + Array(try JSONEncoder().encode(handler)) + Array(#","inputs":["#.utf8)
        for (offset, input) in inputs.enumerated() {
            if offset > 0 { body.append(UInt8(ascii: ",")) }
            body += input
        }
        body += Array("]}".utf8)
        return body
    }
}

/// One entry of a batch's output.
public struct BatchEntry: Decodable, Sendable {
    public var ok: Bool
    public var error: String?
    /// The input's output, as raw JSON.
    public var output: [UInt8]

    enum CodingKeys: String, CodingKey { case ok, output, error }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        ok = try container.decode(Bool.self, forKey: .ok)
        error = try container.decodeIfPresent(String.self, forKey: .error)
        output = []
    }

    /// Splits a batch output into its entries, keeping each output's raw JSON.
    public static func split(_ bytes: [UInt8]) throws -> [BatchEntry] {
        guard let array = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) as? [[String: Any]] else {
            throw BatchFormat.Malformed()
        }
        return try array.map { object in
            var entry = try JSONDecoder().decode(BatchEntry.self, from: JSONSerialization.data(withJSONObject: object))
            if let value = object["output"] {
                entry.output = Array(try JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed]))
            }
            return entry
        }
    }
}
