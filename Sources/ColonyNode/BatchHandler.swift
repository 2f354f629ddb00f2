import ColonyModel
import ColonyWire
import Foundation

/// `batch`: runs one handler over several inputs in one task (`map --chunk-size K`), so that
/// tiny inputs cost one message per chunk instead of one per input.
///
/// Input: `{"handler": "NAME", "inputs": [JSON, ...]}`. Output: a JSON array with one
/// `{"ok": true, "output": JSON}` or `{"ok": false, "error": "..."}` per input, in order.
/// A failing input fails only its own entry; counter changes of the inputs that succeeded are
/// applied with the batch, those of failed inputs are dropped.
public enum BatchHandler {
    public static let name = BatchFormat.handlerName
    static let inputsMax = BatchFormat.inputsMax

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
