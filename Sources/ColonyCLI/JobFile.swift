import Colony
import ColonyNode
import Foundation
import TOMLKit
import Yams

/// A job file (`colony submit-file FILE`): tasks with their handler or command, inputs,
/// dependencies by name, and scheduling options, in TOML (or YAML for `.yaml`/`.yml`).
///
/// ```toml
/// [defaults]
/// retries = 2
///
/// [[tasks]]
/// name = "numbers"
/// command = ["sh", "-c", "seq 1 10 > /tmp/numbers"]
///
/// [[tasks]]
/// name = "sum"
/// command = ["sh", "-c", "awk '{ s += $1 } END { print s }' /tmp/numbers"]
/// after = ["numbers"]
/// ```
/// Reading and checking only: no I/O here. Every key must be known (a misspelt option would
/// otherwise be dropped without a word), names unique, dependencies known and acyclic.
struct JobFile: Sendable, Equatable {
    /// Options every task takes unless it sets its own.
    struct Settings: Decodable, Sendable, Equatable {
        var priority: Int32?
        /// Attempts after the first when the task fails (0 to 999; default 0).
        var retries: Int?
        /// Seconds an attempt may run (default: no limit).
        var timeout: Double?
        /// thread, process or io (default: the handler's own).
        var pool: String?
        var labels: [String: String]?
        /// Cluster limits held while it runs (`colony limit`).
        var uses: [String]?
        /// Commands only: variables added to the node's environment (a task's own win).
        var env: [String: String]?
        /// Commands only: working directory.
        var cwd: String?
        /// Resource requests (`gpus = 1`, `mem = "8G"`), kept as strings.
        var resources: [String: ResourceAmount]?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case priority, retries, timeout, pool, labels, uses, env, cwd, resources
        }

        init() {}

        init(from decoder: any Decoder) throws {
            let fields = try decoder.strictContainer(keyedBy: CodingKeys.self)
            try self.init(fields)
        }

        init<Key: CodingKey>(_ fields: KeyedDecodingContainer<Key>) throws {
            func key(_ name: CodingKeys) -> Key { Key(stringValue: name.rawValue)! }
            priority = try fields.decodeIfPresent(Int32.self, forKey: key(.priority))
            retries = try fields.decodeIfPresent(Int.self, forKey: key(.retries))
            // TOML tells integers from floats: `timeout = 60` is as good as `60.0`.
            timeout = try fields.decodeIfPresent(Double.self, forKey: key(.timeout), orWhole: true)
            pool = try fields.decodeIfPresent(String.self, forKey: key(.pool))
            labels = try fields.decodeIfPresent([String: String].self, forKey: key(.labels))
            uses = try fields.decodeIfPresent([String].self, forKey: key(.uses))
            env = try fields.decodeIfPresent([String: String].self, forKey: key(.env))
            cwd = try fields.decodeIfPresent(String.self, forKey: key(.cwd))
            resources = try fields.decodeIfPresent([String: ResourceAmount].self, forKey: key(.resources))
        }

        /// These settings over `defaults`: a value set here wins; maps are merged.
        func over(_ defaults: Settings) -> Settings {
            var merged = Settings()
            merged.priority = priority ?? defaults.priority
            merged.retries = retries ?? defaults.retries
            merged.timeout = timeout ?? defaults.timeout
            merged.pool = pool ?? defaults.pool
            merged.labels = (defaults.labels ?? [:]).merging(labels ?? [:]) { $1 }
            merged.uses = uses ?? defaults.uses
            merged.env = (defaults.env ?? [:]).merging(env ?? [:]) { $1 }
            merged.cwd = cwd ?? defaults.cwd
            merged.resources = (defaults.resources ?? [:]).merging(resources ?? [:]) { $1 }
            return merged
        }
    }

    /// A resource amount as written (`1`, `0.5`, `"8G"`), kept as text.
    struct ResourceAmount: Decodable, Sendable, Equatable {
        var text: String

        init(from decoder: any Decoder) throws {
            let value = try decoder.singleValueContainer()
            if let whole = try? value.decode(Int64.self) {
                text = String(whole)
            } else if let number = try? value.decode(Double.self) {
                text = String(number)
            } else {
                text = try value.decode(String.self)
            }
        }
    }

    /// One task as written.
    struct Entry: Decodable, Sendable, Equatable {
        /// Unique in the file; what `after` refers to.
        var name: String
        /// A handler and its input (any value; JSON null when left out) ...
        var handler: String?
        var input: JSONValue?
        /// ... or a command (argv, no shell) run by `exec`, which fails the task when the
        /// command does not exit 0 (unless `allow_nonzero`).
        var command: [String]?
        var stdin: String?
        var allowNonzero: Bool?
        /// Names of tasks that must succeed first.
        var after: [String]
        var settings: Settings

        enum CodingKeys: String, CodingKey, CaseIterable {
            case name, handler, input, command, stdin, allowNonzero = "allow_nonzero", after
            // Settings, here for the strict check of the keys.
            case priority, retries, timeout, pool, labels, uses, env, cwd, resources
        }

        init(from decoder: any Decoder) throws {
            let fields = try decoder.strictContainer(keyedBy: CodingKeys.self)
            name = try fields.decode(String.self, forKey: .name)
            handler = try fields.decodeIfPresent(String.self, forKey: .handler)
            input = try fields.decodeIfPresent(JSONValue.self, forKey: .input)
            command = try fields.decodeIfPresent([String].self, forKey: .command)
            stdin = try fields.decodeIfPresent(String.self, forKey: .stdin)
            allowNonzero = try fields.decodeIfPresent(Bool.self, forKey: .allowNonzero)
            after = try fields.decodeIfPresent([String].self, forKey: .after) ?? []
            settings = try Settings(fields)
        }
    }

    private struct Document: Decodable {
        var name: String?
        var defaults: Settings?
        var tasks: [Entry]

        enum CodingKeys: String, CodingKey, CaseIterable {
            case name, defaults, tasks
        }

        init(from decoder: any Decoder) throws {
            let fields = try decoder.strictContainer(keyedBy: CodingKeys.self)
            name = try fields.decodeIfPresent(String.self, forKey: .name)
            defaults = try fields.decodeIfPresent(Settings.self, forKey: .defaults)
            tasks = try fields.decodeIfPresent([Entry].self, forKey: .tasks) ?? []
        }
    }

    /// A task ready to submit: what it runs, its options (without dependencies), and the
    /// positions in `tasks` of those it waits for.
    struct Planned: Sendable, Equatable {
        var name: String
        var handler: String
        var input: [UInt8]
        var options: TaskOptions
        var after: [Int]
        var resources: [String: String]
        var isCommand: Bool
    }

    /// The job's name (informational; jobs will carry it).
    var name: String?
    /// In file order.
    var tasks: [Planned]
    /// Positions in `tasks`, in an order where every task comes after its dependencies.
    var order: [Int]

    /// Why a job file was refused: one line.
    struct Refusal: Error, CustomStringConvertible, Equatable {
        let description: String
        init(_ description: String) { self.description = description }
    }

    enum Format: Sendable {
        case toml, yaml

        /// By the file's extension: `.yaml`/`.yml` are YAML, anything else TOML.
        init(path: String) {
            let lower = path.lowercased()
            self = lower.hasSuffix(".yaml") || lower.hasSuffix(".yml") ? .yaml : .toml
        }
    }

    /// Reads and checks a job file's text.
    static func parse(_ text: String, format: Format) throws(Refusal) -> JobFile {
        let document: Document
        do {
            switch format {
            case .toml: document = try TOMLDecoder().decode(Document.self, from: text)
            case .yaml:
                try refuseYAMLBombs(text)
                document = try YAMLDecoder().decode(Document.self, from: text)
            }
        } catch let refusal as Refusal {
            throw refusal
        } catch {
            throw refusal(for: error, format: format, text: text)
        }
        return try plan(document)
    }

    private static func plan(_ document: Document) throws(Refusal) -> JobFile {
        guard !document.tasks.isEmpty else { throw Refusal("the job file has no tasks (give them as [[tasks]] tables)") }
        var position: [String: Int] = [:]
        for (index, entry) in document.tasks.enumerated() {
            guard !entry.name.isEmpty else { throw Refusal("tasks.\(index): name is empty") }
            if position[entry.name] != nil { throw Refusal("two tasks are named '\(entry.name)'") }
            position[entry.name] = index
        }
        let defaults = document.defaults ?? Settings()
        var planned: [Planned] = []
        for entry in document.tasks {
            planned.append(try plan(entry, defaults: defaults, position: position))
        }
        return JobFile(name: document.name, tasks: planned, order: try dependencyOrder(planned))
    }

    private static func plan(_ entry: Entry, defaults: Settings, position: [String: Int]) throws(Refusal) -> Planned {
        let name = entry.name
        let settings = entry.settings.over(defaults)
        var options = TaskOptions()
        options.priority = settings.priority ?? 0
        if let retries = settings.retries {
            guard (0...999).contains(retries) else { throw Refusal("task '\(name)': retries must be from 0 to 999, got \(retries)") }
            options.maxAttempts = retries + 1
            options.retryOnError = retries > 0
        }
        if let timeout = settings.timeout {
            guard timeout > 0 && timeout <= ExecHandler.timeoutSecondsMax else {
                throw Refusal("task '\(name)': timeout must be above 0 seconds and at most a year, got \(timeout)")
            }
            options.timeoutSeconds = timeout
        }
        if let pool = settings.pool {
            guard let known = TaskPool(rawValue: pool), known != .automatic else {
                throw Refusal("task '\(name)': pool must be thread, process or io, got '\(pool)'")
            }
            options.pool = known
        }
        options.requiredLabels = settings.labels ?? [:]
        options.uses = settings.uses ?? []
        var after: [Int] = []
        for dependency in entry.after {
            guard let index = position[dependency] else { throw Refusal("task '\(name)' depends on '\(dependency)', which the file does not define") }
            guard dependency != name else { throw Refusal("task '\(name)' depends on itself") }
            if !after.contains(index) { after.append(index) }
        }
        let handler: String
        let input: [UInt8]
        switch (entry.handler, entry.command) {
        case (nil, nil), (_?, _?):
            throw Refusal("task '\(name)' needs either a handler (with its input) or a command, not \(entry.handler == nil ? "neither" : "both")")
        case (let handlerName?, nil):
            guard entry.stdin == nil, entry.allowNonzero == nil, entry.settings.env == nil, entry.settings.cwd == nil else {
                throw Refusal("task '\(name)': stdin, allow_nonzero, env and cwd go with a command, not a handler")
            }
            handler = handlerName
            input = Array(((try? JSONEncoder().encode(entry.input ?? .null)) ?? Data("null".utf8)))
        case (nil, let argv?):
            guard let program = argv.first, !program.isEmpty else { throw Refusal("task '\(name)': command is empty") }
            guard entry.input == nil else { throw Refusal("task '\(name)': a command takes no input (give stdin instead)") }
            let exec = ExecHandler.Input(argv: argv, env: (settings.env ?? [:]).isEmpty ? nil : settings.env, cwd: settings.cwd,
                                         stdin: entry.stdin, failUnlessZero: !(entry.allowNonzero ?? false))
            handler = ExecHandler.name
            input = Array(((try? JSONEncoder().encode(exec)) ?? Data()))
        }
        return Planned(name: name, handler: handler, input: input, options: options, after: after,
                       resources: (settings.resources ?? [:]).mapValues(\.text), isCommand: entry.command != nil)
    }

    /// Every task after its dependencies (Kahn's algorithm, file order among the ready ones);
    /// a cycle is refused, naming it.
    private static func dependencyOrder(_ tasks: [Planned]) throws(Refusal) -> [Int] {
        var waitingFor = tasks.map(\.after.count)
        var dependents = Array(repeating: [Int](), count: tasks.count)
        for (index, task) in tasks.enumerated() { for dependency in task.after { dependents[dependency].append(index) } }
        var ready = tasks.indices.filter { waitingFor[$0] == 0 }
        var order: [Int] = []
        while !ready.isEmpty {
            let next = ready.removeFirst()
            order.append(next)
            for dependent in dependents[next] {
                waitingFor[dependent] -= 1
                if waitingFor[dependent] == 0 { ready.append(dependent) }
            }
        }
        guard order.count == tasks.count else {
            // Walk back along unfinished dependencies until a task repeats: that is a cycle.
            var path: [Int] = []
            var current = tasks.indices.first { waitingFor[$0] > 0 }!
            while !path.contains(current) {
                path.append(current)
                current = tasks[current].after.first { waitingFor[$0] > 0 }!
            }
            // Dependencies before their dependents, from the one first in the file.
            var cycle = Array(path[path.firstIndex(of: current)!...].reversed())
            let first = cycle.firstIndex(of: cycle.min()!)!
            cycle = Array(cycle[first...] + cycle[..<first])
            let names = cycle.map { tasks[$0].name }
            throw Refusal("dependency cycle: \((names + [names[0]]).joined(separator: " -> "))")
        }
        return order
    }

    /// Groups of positions to submit one after the other: each group depends only on the
    /// groups before it (a submit names its dependencies by id, known once submitted).
    var waves: [[Int]] {
        var level = Array(repeating: 0, count: tasks.count)
        for index in order { level[index] = tasks[index].after.map { level[$0] + 1 }.max() ?? 0 }
        let count = (level.max() ?? -1) + 1
        return (0..<count).map { wave in order.filter { level[$0] == wave } }
    }

}


extension KeyedDecodingContainer {
    /// A number that may be written as an integer too (`orWhole`).
    func decodeIfPresent(_ type: Double.Type, forKey key: Key, orWhole: Bool) throws -> Double? {
        guard contains(key) else { return nil }
        if orWhole, let whole = try? decode(Int64.self, forKey: key) { return Double(whole) }
        return try decode(Double.self, forKey: key)
    }
}
