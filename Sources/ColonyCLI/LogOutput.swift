import ArgumentParser
import Colony
import ColonyModel
import Foundation
import Logging
import Synchronization

/// `--log-level` and `--log-format` for the long-running commands (coordinator, node, up).
struct LogOptions: ParsableArguments {
    @Option(name: .long, help: "Least severe level logged: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(name: .long, help: "text (one readable line per event) or json (one JSON object per line, for log shippers).")
    var logFormat: LogFormat = .text

    /// Sends every swift-log logger of the process to standard error in the chosen format.
    /// Call once, before any logger is made.
    func bootstrap() {
        let level = logLevel
        let format = logFormat
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(label: label, format: format)
            handler.logLevel = level
            return handler
        }
    }
}

/// How log lines look.
enum LogFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case text, json
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// One line per event on standard error: `TIME LEVEL LABEL: MESSAGE key=value ...`, or a JSON
/// object with `time`, `level`, `logger`, `message` and the metadata as fields.
struct LineLogHandler: LogHandler {
    let label: String
    let format: LogFormat
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    /// Lines from many threads never interleave.
    private static let output = Mutex<Void>(())

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    init(label: String, format: LogFormat) {
        self.label = label
        self.format = format
    }

    /// Control characters written as escapes (`\n`, `\u{1B}`): a value with a newline (a
    /// task's error, say) must not split one event into several lines.
    static func oneLine(_ text: String) -> String {
        NameCheck.containsControlCharacter(text) ? NameCheck.escaped(text) : text
    }

    func log(event: LogEvent) {
        let level = event.level
        let message = event.message
        var all = metadata
        if let explicit = event.metadata { all.merge(explicit) { _, new in new } }
        if let error = event.error, all["error"] == nil { all["error"] = "\(error)" }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let time = formatter.string(from: Date())
        let text: String
        switch format {
        case .text:
            let fields = all.sorted { $0.key < $1.key }.map { key, value in
                let rendered = Self.oneLine("\(value)")
                return rendered.contains(where: { $0 == " " || $0 == "\"" }) ? "\(key)=\"\(rendered.replacingOccurrences(of: "\"", with: "\\\""))\"" : "\(key)=\(rendered)"
            }
            text = ([time, level.rawValue, label + ":", Self.oneLine(message.description)] + fields).joined(separator: " ")
        case .json:
            var object: [String: String] = ["time": time, "level": level.rawValue, "logger": label, "message": message.description]
            for (key, value) in all where object[key] == nil { object[key] = "\(value)" }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            text = String(decoding: data, as: UTF8.self)
        }
        Self.output.withLock { _ in FileHandle.standardError.write(Data((text + "\n").utf8)) }
    }
}
