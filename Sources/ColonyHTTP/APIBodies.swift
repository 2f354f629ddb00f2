import ColonyCore
import ColonyModel
import ColonyWire
import Foundation

/// The JSON bodies the HTTP API takes. Each refuses keys it does not know and fields that
/// exclude each other, so a misspelt or contradictory request is answered 400 and changes
/// nothing instead of running with defaults.
enum APIBody {
    /// Decodes `body` as `T`, turning every decoding failure into one line for a 400.
    static func decode<T: Decodable>(_ type: T.Type, from body: [UInt8]) throws(HTTPFrontend.APIError) -> T {
        guard !body.isEmpty else { throw .init("the request needs a JSON object as its body") }
        do {
            return try JSONDecoder().decode(type, from: Data(body))
        } catch let error as HTTPFrontend.APIError {
            throw error
        } catch let error as UnknownFieldError {
            throw .init(error.description)
        } catch let error as ConflictingFieldsError {
            throw .init(error.description)
        } catch let error as DecodingError {
            throw .init(describe(error, bytes: body.count))
        } catch {
            throw .init("\(error)")
        }
    }

    private static func describe(_ error: DecodingError, bytes: Int) -> String {
        func name(_ path: [any CodingKey]) -> String { path.map(\.jsonPathComponent).joined(separator: ".") }
        switch error {
        case .keyNotFound(let key, let context):
            return "'\(name(context.codingPath + [key]))' is required"
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            return context.codingPath.isEmpty ? "the body must be a JSON object" : "'\(name(context.codingPath))' must be \(kind(type))"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty
                ? "the body is not valid JSON (\(bytes) bytes)"
                : "'\(name(context.codingPath))' is not valid: \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    private static func kind(_ type: Any.Type) -> String {
        switch ObjectIdentifier(type) {
        case ObjectIdentifier(Int64.self): "an integer"
        case ObjectIdentifier(Double.self): "a number"
        case ObjectIdentifier(String.self): "a string"
        case ObjectIdentifier(Bool.self): "true or false"
        case ObjectIdentifier([Any].self): "a list"
        case ObjectIdentifier([String: Any].self): "an object"
        default: "a \(type)"
        }
    }
}

/// A number field. Foundation's decoder reports a fraction or an out-of-range number as "not
/// valid JSON" without saying where; this names the field instead.
struct Number<Value: Decodable & Numeric>: Decodable {
    var value: Value

    init(from decoder: any Decoder) throws {
        do {
            value = try decoder.singleValueContainer().decode(Value.self)
        } catch {
            throw DecodingError.typeMismatch(Value.self, .init(codingPath: decoder.codingPath, debugDescription: "\(error)"))
        }
    }
}

/// `POST /api/v1/tasks`: one task object, or `{"tasks": [TASK, ...]}` and nothing else.
struct SubmitBody: Decodable {
    var tasks: [TaskBody]

    enum ListKeys: String, CodingKey, CaseIterable { case tasks }

    init(from decoder: any Decoder) throws {
        guard try decoder.container(keyedBy: ListKeys.self).contains(.tasks) else {
            tasks = [try TaskBody(from: decoder)]
            return
        }
        tasks = try decoder.strictContainer(keyedBy: ListKeys.self).decode([TaskBody].self, forKey: .tasks)
        guard !tasks.isEmpty else { throw HTTPFrontend.APIError("'tasks' must be a non-empty list of tasks") }
    }
}

/// One task: `handler` and `input` (a string is sent as its UTF-8 bytes, any other JSON value
/// as its JSON text), or `input_base64`; optional `priority`, `pool` (`thread`, `process`,
/// `io`, `automatic`), `uses`, `after`, `max_attempts`, `retry_on_error`, `timeout_s`, `labels`, `key`,
/// `resources` (alternatives as `colony submit --resource-variant` takes them: `["gpus=1,cpus=4", "cpus=16"]`).
struct TaskBody: Decodable {
    var handler: String
    var input: JSONValue?
    var inputBase64: String?
    var priority: Int64?
    var pool: String?
    var uses: [String]?
    var after: [Int64]?
    var maxAttempts: Int64?
    var retryOnError: Bool?
    var timeoutSeconds: Double?
    var labels: [String: String]?
    var key: String?
    var resources: [String]?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case handler, input, inputBase64 = "input_base64", priority, pool, uses, after, maxAttempts = "max_attempts"
        case retryOnError = "retry_on_error", timeoutSeconds = "timeout_s", labels, key, resources
    }

    init(from decoder: any Decoder) throws {
        let fields = try decoder.strictContainer(keyedBy: CodingKeys.self)
        handler = try fields.decode(String.self, forKey: .handler)
        // Decoded whenever present, so that `"input": null` is sent as the JSON text `null`.
        input = fields.contains(.input) ? try fields.decode(JSONValue.self, forKey: .input) : nil
        inputBase64 = try fields.decodeIfPresent(String.self, forKey: .inputBase64)
        if input != nil && inputBase64 != nil {
            throw ConflictingFieldsError(fields: ["input", "input_base64"], shapes: "one of them")
        }
        priority = try fields.decodeIfPresent(Number<Int64>.self, forKey: .priority)?.value
        pool = try fields.decodeIfPresent(String.self, forKey: .pool)
        uses = try fields.decodeIfPresent([String].self, forKey: .uses)
        after = try fields.decodeIfPresent([Number<Int64>].self, forKey: .after)?.map(\.value)
        maxAttempts = try fields.decodeIfPresent(Number<Int64>.self, forKey: .maxAttempts)?.value
        retryOnError = try fields.decodeIfPresent(Bool.self, forKey: .retryOnError)
        timeoutSeconds = try fields.decodeIfPresent(Number<Double>.self, forKey: .timeoutSeconds)?.value
        labels = try fields.decodeIfPresent([String: String].self, forKey: .labels)
        key = try fields.decodeIfPresent(String.self, forKey: .key)
        resources = try fields.decodeIfPresent([String].self, forKey: .resources)
    }

    /// The task as the coordinator takes it; `index` names it in errors.
    func spec(index: Int) throws(HTTPFrontend.APIError) -> Colony_V1_TaskSpec {
        func refuse(_ message: String) -> HTTPFrontend.APIError { .init("task \(index): \(message)") }
        var spec = Colony_V1_TaskSpec()
        spec.handler = handler
        switch input {
        case .string(let text)?:
            spec.input = Data(text.utf8)
        case let value?:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            guard let data = try? encoder.encode(value) else { throw refuse("'input' cannot be encoded as JSON") }
            spec.input = data
        case nil:
            if let inputBase64 {
                guard let data = Data(base64Encoded: inputBase64) else { throw refuse("'input_base64' is not base64") }
                spec.input = data
            }
        }
        if let priority {
            guard let small = Int32(exactly: priority) else { throw refuse("'priority' is out of range") }
            spec.priority = small
        }
        switch pool {
        case nil: break
        case "thread": spec.pool = .thread
        case "process": spec.pool = .process
        case "io": spec.pool = .io
        case "automatic", "default": spec.pool = .default
        default: throw refuse("'pool' must be thread, process, io or automatic")
        }
        if let uses { spec.uses = uses }
        if let after {
            guard after.allSatisfy({ $0 > 0 }) else { throw refuse("task ids in 'after' are positive") }
            spec.after = after.map { UInt64($0) }
        }
        if let maxAttempts {
            guard let small = UInt32(exactly: maxAttempts) else { throw refuse("'max_attempts' is out of range") }
            spec.maxAttempts = small
        }
        if let retryOnError { spec.retryOnError = retryOnError }
        if let timeoutSeconds {
            guard timeoutSeconds > 0, timeoutSeconds < 4_000_000 else { throw refuse("'timeout_s' must be a positive number of seconds") }
            spec.timeoutMs = UInt32(max(1, (timeoutSeconds * 1000).rounded()))
        }
        if let labels { spec.labels = labels }
        if let key { spec.key = key }
        for text in resources ?? [] {
            guard let variant = ResourceVariant.parse(text) else {
                throw refuse("'resources' entries are NAME=AMOUNT,... (e.g. \"gpus=1,cpus=4\"), got '\(text)'")
            }
            spec.resources.append(variant.wire)
        }
        return spec
    }
}

/// `POST /api/v1/counters/NAME`: exactly one of `{"add": N}`, `{"set": N}` or
/// `{"expected": E, "value": N}` (compare-and-set), each with an optional idempotency `key`.
struct CounterChangeBody: Decodable {
    var operation: Colony_V1_CounterRequest.Op
    var value: Int64
    var expected: Int64
    var key: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case add, set, expected, value, key }

    static let shapes = #"one of {"add": N}, {"set": N} or {"expected": E, "value": N}"#

    init(from decoder: any Decoder) throws {
        let fields = try decoder.strictContainer(keyedBy: CodingKeys.self)
        let add = try fields.decodeIfPresent(Number<Int64>.self, forKey: .add)?.value
        let set = try fields.decodeIfPresent(Number<Int64>.self, forKey: .set)?.value
        let expected = try fields.decodeIfPresent(Number<Int64>.self, forKey: .expected)?.value
        let value = try fields.decodeIfPresent(Number<Int64>.self, forKey: .value)?.value
        key = try fields.decodeIfPresent(String.self, forKey: .key)
        let given: [(name: String, present: Bool)] = [("add", add != nil), ("set", set != nil),
                                                      ("expected", expected != nil), ("value", value != nil)]
        let changes = [add != nil, set != nil, expected != nil || value != nil].filter { $0 }.count
        guard changes <= 1 else {
            throw ConflictingFieldsError(fields: given.filter(\.present).map(\.name), shapes: Self.shapes)
        }
        switch (add, set, expected, value) {
        case (let add?, nil, nil, nil):
            (operation, self.value, self.expected) = (.add, add, 0)
        case (nil, let set?, nil, nil):
            (operation, self.value, self.expected) = (.set, set, 0)
        case (nil, nil, let expected?, let value?):
            (operation, self.value, self.expected) = (.compareAndSet, value, expected)
        case (nil, nil, nil, _?):
            throw HTTPFrontend.APIError("compare-and-set needs 'expected' with 'value'")
        case (nil, nil, _?, nil):
            throw HTTPFrontend.APIError("compare-and-set needs 'value' with 'expected'")
        default:
            throw HTTPFrontend.APIError("say what to do: \(Self.shapes)")
        }
    }
}
