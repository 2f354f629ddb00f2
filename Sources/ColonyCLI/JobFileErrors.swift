import ColonyModel
import Foundation
import TOMLKit
import Yams

// Reading a job file's text safely: the YAML expansion bound, and the decoders' errors as one
// line that names the line or the field.
extension JobFile {
    /// Most values a YAML job file may expand to.
    static let yamlValuesMax = 1_000_000

    /// YAML aliases let a few hundred bytes stand for millions of values (aliases of aliases):
    /// counts what the document expands to, stopping at the bound, before anything decodes it.
    /// Syntax errors are left to the decoder, which names their line.
    static func refuseYAMLBombs(_ text: String) throws(Refusal) {
        guard let root = (try? Yams.compose(yaml: text)) ?? nil else { return }
        var stack = [root]
        var count = 0
        while let node = stack.popLast() {
            count += 1
            if count > yamlValuesMax {
                throw Refusal("the YAML expands to more than \(yamlValuesMax) values (aliases of aliases?); write the tasks out")
            }
            switch node {
            case .mapping(let mapping): for (key, value) in mapping { stack.append(key); stack.append(value) }
            case .sequence(let sequence): stack.append(contentsOf: sequence)
            case .scalar, .alias: break
            }
        }
    }

    /// One line for what the decoders threw (Yams wraps the real error in `dataCorrupted`).
    static func refusal(for error: any Error, format: Format, text: String) -> Refusal {
        switch error {
        case DecodingError.dataCorrupted(let context) where context.underlyingError != nil:
            return refusal(for: context.underlyingError!, format: format, text: text)
        case let error as DecodingError:
            return Refusal(describe(error))
        case let error as TOMLParseError:
            return Refusal("line \(error.source.begin.line), column \(error.source.begin.column): \(oneLine(error.description))")
        case let error as UnknownFieldError:
            let line = format == .toml ? tomlLine(of: error.field, in: error.path, text: text) : nil
            return Refusal((line.map { "line \($0): " } ?? "") + error.description)
        default:
            return Refusal(oneLine(String(describing: error)))
        }
    }

    /// The line (from 1) where `key` is set in the table at `path` ("", "defaults",
    /// "tasks.N"), for a TOML file written with table headers; nil when not found so.
    static func tomlLine(of key: String, in path: String, text: String) -> Int? {
        var section = ""
        var taskTables = 0
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[[") {
                let name = line.dropFirst(2).prefix { $0 != "]" }.trimmingCharacters(in: .whitespaces)
                section = name == "tasks" ? "tasks.\(taskTables)" : name
                if name == "tasks" { taskTables += 1 }
            } else if line.hasPrefix("[") {
                section = line.dropFirst().prefix { $0 != "]" }.trimmingCharacters(in: .whitespaces)
            } else if section == path, line.hasPrefix(key) || line.hasPrefix("\"\(key)\""),
                      line.dropFirst(line.hasPrefix(key) ? key.count : key.count + 2).trimmingCharacters(in: .whitespaces).hasPrefix("=") {
                return index + 1
            }
        }
        return nil
    }

    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: " ")
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.isEmpty ? "the top level" : keys.map(\.jsonPathComponent).joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context) where context.codingPath.last?.stringValue == key.stringValue:
            // How TOMLKit reports a value of the wrong type.
            return "\(path(context.codingPath)): a value of the wrong type"
        case .keyNotFound(let key, let context):
            let place = context.codingPath.isEmpty ? "" : " in \(path(context.codingPath))"
            return "missing key '\(key.stringValue)'\(place)"
        case .typeMismatch(let type, let context): return "\(path(context.codingPath)): expected \(describe(type))"
        case .valueNotFound(let type, let context): return "\(path(context.codingPath)): expected \(describe(type))"
        case .dataCorrupted(let context): return "\(path(context.codingPath)): \(oneLine(context.debugDescription))"
        @unknown default: return oneLine("\(error)")
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int32.Type, is Int64.Type: "an integer"
        case is Double.Type: "a number"
        case is Bool.Type: "true or false"
        default: String(describing: type)
        }
    }
}
