import ColonyCore
import Foundation

/// `batch`: runs one handler over several inputs in one task (`map --chunk-size K`), so that
/// tiny inputs cost one message per chunk instead of one per input.
///
/// Input: `{"handler": "NAME", "inputs": [JSON, ...]}`. Output: a JSON array with one
/// `{"ok": true, "output": JSON}` or `{"ok": false, "error": "..."}` per input, in order.
/// A failing input fails only its own entry; counter changes of the inputs that succeeded are
/// applied with the batch, those of failed inputs are dropped.
public enum BatchHandler {
    public static let name = "batch"

    /// Most inputs in one batch.
    public static let inputsMax = 100_000

    /// `{"handler": NAME, "inputs": [...]}`, no other keys.
    struct Input: Decodable {
        var handler: String
        var inputs: [JSONValue]

        enum CodingKeys: String, CodingKey, CaseIterable { case handler, inputs }

        init(from decoder: any Decoder) throws {
            let fields = try decoder.strictContainer(keyedBy: CodingKeys.self)
            handler = try fields.decode(String.self, forKey: .handler)
            inputs = try fields.decode([JSONValue].self, forKey: .inputs)
        }
    }

    /// The batch handler over `registry` (batches do not nest).
    static func handler(over registry: HandlerRegistry) -> AnyTaskHandler {
        AnyTaskHandler(name: name) { bytes, context in
            let batch: Input
            do {
                batch = try JSONDecoder().decode(Input.self, from: Data(bytes))
            } catch let error as UnknownFieldError {
                throw ValidationFailure("batch: \(error)")
            } catch {
                throw ValidationFailure(#"batch takes {"handler": NAME, "inputs": [...]}"#)
            }
            let (handlerName, inputs) = (batch.handler, batch.inputs)
            guard inputs.count <= inputsMax else { throw ValidationFailure("a batch holds at most \(inputsMax) inputs") }
            guard handlerName != name, let handler = registry[handlerName] else {
                throw HandlerError.unknownHandler(handlerName, node: context.nodeName, known: registry.names)
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            var output: [UInt8] = [UInt8(ascii: "[")]
            for (index, item) in inputs.enumerated() {
                try Task.checkCancellation()
                if index > 0 { output.append(UInt8(ascii: ",")) }
                var itemContext = TaskContext(taskID: context.taskID, attempt: context.attempt, nodeName: context.nodeName,
                                              dependencyOutputs: context.dependencyOutputs)
                itemContext.resources = context.resources
                do {
                    let itemBytes = try encoder.encode(item)
                    let result = try await handler.run(Array(itemBytes), context: itemContext)
                    for change in itemContext.recorder.recorded { context.recorder.add(change.name, change.delta) }
                    output += Array(#"{"ok":true,"output":"#.utf8) + (result.isEmpty ? Array("null".utf8) : result) + [UInt8(ascii: "}")]
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    let message = try JSONSerialization.data(withJSONObject: String(describing: error), options: [.fragmentsAllowed])
                    output += Array(#"{"ok":false,"error":"#.utf8) + Array(message) + [UInt8(ascii: "}")]
                }
            }
            output.append(UInt8(ascii: "]"))
            return output
        }
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
            throw ValidationFailure("a batch output is a JSON array of objects")
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
