import ArgumentParser
import Colony
import ColonyModel
import Foundation

/// `colony drain NODE`: a node finishes its running tasks, hands back the rest, and leaves.
struct DrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain",
        abstract: "Make a node stop taking tasks, finish (or at --deadline hand back) what it runs, and exit 0."
    )

    @OptionGroup var client: ClientOptions

    @Argument(help: "The node's name (see colony status).")
    var node: String

    @Option(name: .long, parsing: .unconditional, help: "Seconds the node may finish its running tasks; what still runs then is handed back to other nodes.")
    var deadline: Double = 30

    func validate() throws {
        _ = try SecondsRange.drainDeadline.check(deadline, "--deadline")
    }

    func run() async throws {
        let deadline = try SecondsRange.drainDeadline.duration(self.deadline, "--deadline")
        try await withClient(client) { colony in
            guard try await colony.drain(node: node, deadline: deadline) else {
                throw CLIError("no node named '\(node)' is known to the coordinator (see colony status)")
            }
            print("node \(node) is draining")
        }
    }
}

/// `colony counter get|add|set|cas|list`: the cluster's named counters.
struct CounterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "counter",
        abstract: "Read and change the cluster's named counters (exact under concurrency).",
        discussion: """
            colony counter get hits        colony counter add hits 5
            colony counter set hits 0      colony counter cas hits 5 6     (set 6 if it is 5)
            colony counter list
            """
    )

    @OptionGroup var client: ClientOptions

    @Argument(help: "get, add, set, cas or list.")
    var operation: String

    @Argument(help: "The counter's name (not for list).")
    var name: String?

    // Collects what the parser does not recognise, so that negative numbers (`add hits -5`)
    // are values rather than unknown options.
    @Argument(parsing: .allUnrecognized, help: "add: the amount; set: the value; cas: EXPECTED NEW (negative numbers too).")
    var values: [Int64] = []

    func run() async throws {
        try await withClient(client) { colony in try await run(colony) }
    }

    private func run(_ colony: ColonyClient) async throws {
        if operation == "list" {
            for (name, value) in try await colony.counters() { print("\(name)\t\(value)") }
            return
        }
        guard let name else { throw CLIError("counter \(operation) needs a counter name") }
        let counter = colony.counter(name)
        switch (operation, values.count) {
        case ("get", 0): print(try await counter.get())
        case ("add", 1): print(try await counter.add(values[0]))
        case ("set", 1):
            _ = try await counter.set(values[0])
            print(values[0])
        case ("cas", 2):
            let swapped = try await counter.compareAndSet(expected: values[0], new: values[1])
            print(swapped ? "swapped" : "not swapped: value is \(try await counter.get())")
            if !swapped { throw ExitCode(1) }
        default:
            throw CLIError("usage: colony counter get NAME | add NAME N | set NAME N | cas NAME EXPECTED NEW | list")
        }
    }
}

/// `colony limit set|list`: cluster-wide semaphores.
struct LimitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "limit",
        abstract: "Set or list cluster limits: at most SIZE tasks that use a limit run at once.",
        discussion: "colony limit set db 2     then submit tasks with --uses db\ncolony limit list"
    )

    @OptionGroup var client: ClientOptions

    @Argument(help: "set or list.")
    var operation: String

    // As in `counter`: a negative size reaches the size check instead of failing as an option.
    @Argument(parsing: .allUnrecognized, help: "set: NAME SIZE.")
    var arguments: [String] = []

    func run() async throws {
        try await withClient(client) { colony in try await run(colony) }
    }

    private func run(_ colony: ColonyClient) async throws {
        switch operation {
        case "set":
            guard arguments.count == 2, let size = Int(arguments[1]), size >= 0 else {
                throw CLIError("usage: colony limit set NAME SIZE (SIZE a whole number from 1 to 1000000)")
            }
            try await colony.setLimit(arguments[0], size: size)
            print("limit \(arguments[0]) = \(size)")
        case "list":
            print("LIMIT\tSIZE\tIN USE\tMOST AT ONCE")
            for limit in try await colony.limits() { print("\(limit.name)\t\(limit.size)\t\(limit.inUse)\t\(limit.highWater)") }
        default:
            throw CLIError("usage: colony limit set NAME SIZE | colony limit list")
        }
    }
}

/// `colony cancel ID...`
struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Cancel tasks: queued ones are removed, running ones stopped, dependents cancelled too."
    )

    @OptionGroup var client: ClientOptions

    @Argument(help: "Task ids.")
    var ids: [UInt64] = []

    @Option(name: .long, help: "Cancel every unfinished task of this client session (a map that was killed; `colony status` lists sessions with results waiting).")
    var session: String?

    func validate() throws {
        if ids.isEmpty && session == nil { throw CLIError("give task ids or --session ID") }
    }

    func run() async throws {
        try await withClient(client) { colony in try await run(colony) }
    }

    private func run(_ colony: ColonyClient) async throws {
        var cancelled = ids.isEmpty ? 0 : try await colony.cancel(ids)
        if let session { cancelled += try await colony.cancel(session: session) }
        print("cancelled \(cancelled) task(s)")
    }
}

/// `colony tasks [--state S]`
struct TasksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tasks",
        abstract: "List the tasks the coordinator knows (unfinished, or finished with results not fetched yet)."
    )

    @OptionGroup var client: ClientOptions

    @Option(name: .long, help: "Only tasks in this state: waiting, queued, running, succeeded, failed, cancelled.")
    var state: String?

    @Option(name: .long, help: "At most this many.")
    var limit = 1000

    func run() async throws {
        var phase: TaskPhase?
        if let state {
            guard let known = TaskPhase(rawValue: state) else {
                throw CLIError("unknown state '\(state)' (one of \(TaskPhase.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            phase = known
        }
        let wanted = phase
        let tasks = try await withClient(client) { colony in try await colony.tasks(in: wanted, limit: limit) }
        print("ID\tSTATE\tHANDLER\tPRIORITY\tATTEMPT\tNODE\tERROR")
        for task in tasks {
            print("\(task.id)\t\(task.phase.rawValue)\t\(task.handler)\t\(task.priority)\t\(task.attempt)\t\(task.node)\t\(task.error)")
        }
    }
}

/// `colony result ID`
struct ResultCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "result",
        abstract: "Print a task's output (JSON) once it finished; exit 1 if it failed. The result is handed out once."
    )

    @OptionGroup var client: ClientOptions

    @Argument(help: "The task id (printed by colony submit).")
    var id: UInt64

    @Option(name: .long, parsing: .unconditional, help: "Seconds to wait for the task to finish.")
    var wait: Double = 5

    func validate() throws {
        _ = try SecondsRange.wait.check(wait, "--wait")
    }

    func run() async throws {
        try await withClient(client) { colony in try await run(colony) }
    }

    private func run(_ colony: ColonyClient) async throws {
        // The coordinator holds one request at most 5 s: ask again until --wait runs out.
        let deadline = ContinuousClock.now + (try SecondsRange.wait.duration(wait, "--wait"))
        var fetched = try await colony.fetchResult(of: id, wait: min(max(.zero, deadline - ContinuousClock.now), .seconds(5)))
        while fetched == nil && ContinuousClock.now < deadline {
            let left = max(.zero, deadline - ContinuousClock.now)
            fetched = try await colony.fetchResult(of: id, wait: min(left, .seconds(5)))
        }
        guard let result = fetched else {
            throw CLIError("task \(id) has not finished yet (waited \(wait) s; try --wait with more)")
        }
        guard result.succeeded else { throw CLIError("task \(id) \(result.cancelled ? "was cancelled" : "failed on \(result.node): \(result.error)")") }
        print(result.outputText)
    }
}

/// Scheduling options shared by `submit` (and later `map`).
struct TaskOptionFlags: ParsableArguments {
    // Unconditional: the next word is the value even when it starts with '-' (`--priority -2`).
    @Option(name: .long, parsing: .unconditional, help: "Priority: higher runs first (default 0; negative runs after).")
    var priority: Int32 = 0

    @Option(name: .long, help: "A cluster limit the task holds while it runs (repeatable).")
    var uses: [String] = []

    @Option(name: .long, help: "A task id that must succeed first (repeatable).")
    var after: [UInt64] = []

    @Option(name: .long, parsing: .unconditional, help: "Retry a failed handler this many times (with back-off).")
    var retries: Int = 0

    @Option(name: .long, parsing: .unconditional, help: "Seconds an attempt may run.")
    var timeout: Double?

    @Option(name: .long, help: "A label KEY=VALUE the node must have (repeatable).")
    var requireLabel: [String] = []

    @Option(name: .long, help: "The pool to run in: thread, process, io, or automatic (the handler's default: process for exec, crash and allocate, io for fetch and sleep, thread for the rest).")
    var pool: TaskPool = .automatic

    @OptionGroup var resourceFlags: ResourceFlags

    func validate() throws {
        if let timeout { _ = try SecondsRange.taskTimeout.check(timeout, "--timeout") }
    }

    func options() throws -> TaskOptions {
        guard retries >= 0, retries < 1000 else { throw CLIError("--retries must be 0 to 999") }
        if let timeout { _ = try SecondsRange.taskTimeout.check(timeout, "--timeout") }
        var options = TaskOptions(priority: priority, uses: uses, after: after, maxAttempts: retries + 1, retryOnError: retries > 0,
                                  timeoutSeconds: timeout, requiredLabels: try parseLabels(requireLabel), pool: pool)
        options.resources = try resourceFlags.variants()
        return options
    }
}

/// Parses `KEY=VALUE` pairs.
func parseLabels(_ pairs: [String]) throws -> [String: String] {
    var labels: [String: String] = [:]
    for pair in pairs {
        guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
            throw CLIError("a label is KEY=VALUE, got '\(pair)'")
        }
        labels[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
    }
    return labels
}

extension TaskPool: ExpressibleByArgument {}
