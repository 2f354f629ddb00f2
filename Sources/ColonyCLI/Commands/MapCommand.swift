import ArgumentParser
import Colony
import ColonyModel
import ColonyNode
import ColonyWire
import Foundation

/// `colony map -- CMD ARGS...`: a cluster-wide `xargs -P` / GNU parallel.
struct MapCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "map",
        abstract: "Run a command (or a handler) once per input line across the cluster; print the outputs in input order.",
        discussion: """
            Inputs are read one per line from standard input (or --inputs FILE). Each `{}` in the
            command's arguments is replaced by the input; without `{}` the input is appended as
            the last argument. Commands run as `exec` tasks on nodes started with --allow-exec,
            without a shell (use `sh -c '...'` for one). Exit status: 0 when every input
            succeeded, 1 otherwise, with a summary of the failures on stderr.
              seq 100 | colony map -- sh -c 'echo $(( {} * {} ))'
              ls *.png | colony map --joblog jobs.tsv -- convert {} {}.jpg
              printf '{"lo":0,"hi":1000}\\n' | colony map --handler primes
            With --pipe, the input is cut into chunks of whole lines (--block SIZE or
            -N LINES), each fed to one run of the command on its standard input, as
            GNU parallel --pipe does; outputs come back in chunk order.
              seq 1000000 | colony map --pipe -N 100000 -- awk '{s+=$1} END {print s/NR}'
              colony map --pipe --block 4M --header 1 --inputs big.csv -- ./sum.py
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(name: .long, help: "Read inputs from this file instead of standard input.")
    var inputs: String?

    @Option(name: .long, help: "Map this handler over JSON inputs instead of running a command.")
    var handler: String?

    @Flag(name: .long, help: "Print outputs as tasks finish instead of in input order.")
    var unordered = false

    @Option(name: .long, help: "Run a failing input again up to this many times.")
    var retries = 0

    @Option(name: .long, parsing: .unconditional, help: "Seconds one input may run.")
    var timeout: Double?

    @Option(name: .long, help: "Write one line per input: input, node, attempt, status, seconds (tab-separated).")
    var joblog: String?

    @Option(name: .long, help: "Send this many inputs per task (far fewer messages for tiny inputs; outputs and failures stay per input).")
    var chunkSize = 1

    @Option(name: .long, help: "The pool to run in: thread, process, io, or automatic (commands: process; handlers: their default).")
    var pool: TaskPool = .automatic

    @Option(name: .long, help: "A cluster limit every input holds while it runs (repeatable).")
    var uses: [String] = []

    @Option(name: .long, help: "Run only on nodes with this label, KEY=VALUE (repeatable).")
    var requireLabel: [String] = []

    @OptionGroup var resourceFlags: ResourceFlags

    @Flag(name: .long, help: "Feed chunks of the input to the command's stdin instead of one line per argument.")
    var pipe = false

    @Option(name: .long, help: "With --pipe: chunks of whole lines up to this size, e.g. 1M (default) or 512K.")
    var block: String?

    @Option(name: .customShort("N"), parsing: .unconditional, help: "With --pipe: chunks of this many lines.")
    var lineCount: Int?

    @Option(name: .long, help: "With --pipe: the first this many lines are a header, repeated at the start of every chunk.")
    var header = 0

    @Flag(name: .long, help: "Submit every input as a detached job, print its id and return: 'colony job wait ID' and 'colony job results ID' take it from there, from any client.")
    var detach = false

    @Option(name: .long, help: "Add the tasks to the job of this name (made if missing) instead of a new job.")
    var job: String?

    @Argument(parsing: .captureForPassthrough, help: "-- CMD ARGS... (the command to run per input).")
    var command: [String] = []

    func validate() throws {
        if Self.asksForHelp(command) { throw CleanExit.helpRequest(self) }
        let argv = command.first == "--" ? Array(command.dropFirst()) : command
        if handler == nil && argv.isEmpty { throw CLIError("give a command after --, or --handler NAME") }
        if handler != nil && !argv.isEmpty { throw CLIError("give either a command or --handler, not both") }
        guard retries >= 0, retries < 1000 else { throw CLIError("--retries must be 0 to 999") }
        if let timeout { _ = try SecondsRange.taskTimeout.check(timeout, "--timeout") }
        guard chunkSize >= 1, chunkSize <= BatchFormat.inputsMax else { throw CLIError("--chunk-size must be 1 to \(BatchFormat.inputsMax)") }
        if pipe {
            if handler != nil { throw CLIError("--pipe feeds a command's stdin: give a command after --, not --handler") }
            if chunkSize != 1 { throw CLIError("--pipe sends one chunk per task: leave out --chunk-size") }
            _ = try pipeCut()
            guard header >= 0, header <= 1_000_000 else { throw CLIError("--header must be 0 to 1000000") }
        } else if block != nil || lineCount != nil || header != 0 {
            throw CLIError("--block, -N and --header go with --pipe")
        }
        if detach && (chunkSize != 1 || unordered || joblog != nil) {
            throw CLIError("--detach leaves the results to 'colony job results': leave out --chunk-size, --unordered and --joblog")
        }
    }

    /// How --pipe cuts the input.
    private func pipeCut() throws -> PipeChunks.Cut {
        if block != nil && lineCount != nil { throw CLIError("give --block or -N, not both") }
        if let lineCount {
            guard lineCount >= 1, lineCount <= 1 << 30 else { throw CLIError("-N must be 1 to \(1 << 30)") }
            return .lines(lineCount)
        }
        let bytes = try block.map { try PipeChunks.parseBytes($0, option: "--block") } ?? PipeChunks.blockBytesDefault
        guard bytes <= PipeChunks.chunkBytesMax else {
            throw CLIError("--block must be at most \(PipeChunks.chunkBytesMax) bytes: a chunk travels in one message")
        }
        return .bytes(bytes)
    }

    func run() async throws {
        let argv = command.first == "--" ? Array(command.dropFirst()) : command
        if pipe { return try await runPipe(argv) }
        let lines = try readInputs()
        var options = TaskOptions(uses: uses, maxAttempts: retries + 1, retryOnError: retries > 0,
                                  requiredLabels: try parseLabels(requireLabel), pool: pool)
        options.resources = try resourceFlags.variants()
        // A chunk's timeout covers all of its inputs (each input keeps its own).
        if let timeout { options.timeoutSeconds = min(timeout * Double(chunkSize) + 5, SecondsRange.taskTimeout.most) }
        var submissions: [TaskSubmission] = []
        submissions.reserveCapacity(lines.count)
        for (index, line) in lines.enumerated() {
            if let handler {
                guard (try? JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed])) != nil else {
                    throw CLIError("input line \(index + 1) is not valid JSON: \(line.prefix(80))")
                }
                submissions.append(TaskSubmission(handler: handler, input: Array(line.utf8), options: options))
            } else {
                let input = ExecHandler.Input(argv: Self.substitute(argv, with: line), timeoutSeconds: timeout, failUnlessZero: true)
                submissions.append(TaskSubmission(handler: ExecHandler.name, input: Array(try JSONEncoder().encode(input)), options: options))
            }
        }
        if detach { return try await submitDetached(submissions) }
        let handlerName = handler ?? ExecHandler.name
        let url = client.coordinatorURL
        let (allSubmissions, taskOptions) = (submissions, options)
        let failures = try await withClient(client) { colony in
            do {
                return try await WaitingNotice.around(colony, url: url, handler: handlerName, options: taskOptions) {
                    try await mapAll(colony, submissions: allSubmissions, lines: lines, options: taskOptions)
                }
            } catch let error as ColonyError {
                throw await giveUp(colony, error)
            }
        }
        if !failures.isEmpty {
            printError("colony map: \(failures.count) of \(lines.count) input(s) failed:")
            for failure in failures.prefix(20) { printError("  \(failure)") }
            if failures.count > 20 { printError("  ... and \(failures.count - 20) more") }
            throw ExitCode(1)
        }
    }

    /// `--pipe`: one exec task per chunk, the chunk's bytes on the command's stdin.
    private func runPipe(_ argv: [String]) async throws {
        let chunks = try PipeChunks.cut(try readInputBytes(), by: try pipeCut(), headerLines: header)
        var options = TaskOptions(uses: uses, maxAttempts: retries + 1, retryOnError: retries > 0,
                                  requiredLabels: try parseLabels(requireLabel), pool: pool)
        options.resources = try resourceFlags.variants()
        if let timeout { options.timeoutSeconds = min(timeout + 5, SecondsRange.taskTimeout.most) }
        let command = ExecHandler.Input(argv: argv, timeoutSeconds: timeout, outputBytesMax: Self.pipeOutputBytesMax, failUnlessZero: true)
        var submissions: [TaskSubmission] = []
        submissions.reserveCapacity(chunks.count)
        for chunk in chunks {
            submissions.append(TaskSubmission(handler: ExecHandler.name, input: try ExecHandler.encode(command, stdin: chunk.bytes), options: options))
        }
        if detach { return try await submitDetached(submissions) }
        let described = chunks.enumerated().map { "chunk \($0.offset + 1) (\($0.element.label))" }
        let url = client.coordinatorURL
        let (allSubmissions, taskOptions) = (submissions, options)
        let failures = try await withClient(client) { colony in
            do {
                return try await WaitingNotice.around(colony, url: url, handler: ExecHandler.name, options: taskOptions) {
                    try await collect(colony, ids: try await colony.submit(allSubmissions, job: jobTarget).ids, lines: described, described: true)
                }
            } catch let error as ColonyError {
                throw await giveUp(colony, error)
            }
        }
        if !failures.isEmpty {
            printError("colony map: \(failures.count) of \(chunks.count) chunk(s) failed:")
            for failure in failures.prefix(20) { printError("  \(failure)") }
            if failures.count > 20 { printError("  ... and \(failures.count - 20) more") }
            throw ExitCode(1)
        }
    }

    /// Most bytes of a chunk's stdout (and of its stderr) kept: its result must fit the
    /// coordinator's result limit (4 MiB) once written as JSON. A chunk whose output was cut fails.
    static let pipeOutputBytesMax = 3 << 20

    /// Submits every input and collects the results; returns the failures.
    private func mapAll(_ colony: ColonyClient, submissions: [TaskSubmission], lines: [String], options: TaskOptions) async throws -> [String] {
        if chunkSize > 1 {
            let results = try await colony.mapRawResults(submissions.first?.handler ?? ExecHandler.name, submissions.map(\.input),
                                                         options: options, chunkSize: chunkSize)
            return try await collect(colony, ids: [], lines: lines, finished: results)
        }
        let ids = try await colony.submit(submissions, job: jobTarget).ids
        return try await collect(colony, ids: ids, lines: lines)
    }

    /// The job the tasks go into: --job NAME (or id), else a new one.
    private var jobTarget: JobTarget { JobTarget(reference: job) }

    /// `--detach`: the tasks outlive this client; prints the job's id.
    private func submitDetached(_ submissions: [TaskSubmission]) async throws {
        var detached = submissions
        for index in detached.indices { detached[index].detached = true }
        let target = jobTarget
        let (job, _) = try await withClient(client) { try await $0.submit(detached, job: target) }
        print(job)
    }

    /// A map that gives up (its coordinator did not answer within the patience) leaves no work
    /// behind: it cancels what it submitted, or says how to once the coordinator is back.
    private func giveUp(_ colony: ColonyClient, _ error: ColonyError) async -> CLIError {
        let session = colony.session
        switch error {
        case .timedOut, .unreachable, .transport, .unavailable:
            if let cancelled = try? await colony.cancelAll(patience: .seconds(5)) {
                return CLIError("\(error); cancelled its \(cancelled) unfinished task(s)")
            }
            return CLIError("\(error); its tasks may still run: cancel them with 'colony cancel --session \(session)'")
        default:
            return CLIError("\(error)")
        }
    }

    /// Prints outputs (in order, or as they finish), writes the job log, returns the failures.
    /// With `described`, `lines` are descriptions of the inputs (--pipe's chunks), not the inputs.
    private func collect(_ colony: ColonyClient, ids: [TaskID], lines: [String], finished: [TaskResult]? = nil, described: Bool = false) async throws -> [String] {
        let log = try joblog.map { path -> FileHandle in
            guard FileManager.default.createFile(atPath: path, contents: Data("input\tnode\tattempt\tstatus\tseconds\n".utf8)) else {
                throw CLIError("cannot write the job log \(path)")
            }
            return try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        }
        defer { try? log?.close() }
        try log?.seekToEnd()
        let progress = Progress(total: lines.count, quiet: !standardErrorIsTerminal)
        var failures: [String] = []
        let indexByID = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
        func report(_ result: TaskResult, index known: Int? = nil) {
            let index = known ?? indexByID[result.id] ?? 0
            let line = lines[index]
            let failure = result.succeeded ? emit(result) : result.error
            if let failure {
                failures.append(described ? "\(line): \(failure)" : "input \(index + 1) '\(line.prefix(60))': \(failure)")
            }
            let status = (failure ?? "0").replacingOccurrences(of: "\t", with: " ").replacingOccurrences(of: "\n", with: " ")
            log?.write(Data("\(line)\t\(result.node)\t\(result.attempt)\t\(status)\t\(String(format: "%.3f", Double(result.runMicros) / 1e6))\n".utf8))
            progress.advance()
        }
        if let finished {
            for (index, result) in finished.enumerated() { report(result, index: index) }
        } else if unordered {
            try await withThrowingTaskGroup(of: TaskResult.self) { group in
                for id in ids { group.addTask { try await colony.result(of: id) } }
                for try await result in group { report(result) }
            }
        } else {
            // Await in input order, in windows, so output streams while later inputs run.
            var start = 0
            while start < ids.count {
                let window = Array(ids[start..<min(start + 256, ids.count)])
                for result in try await colony.results(of: window) { report(result) }
                start += window.count
            }
        }
        progress.finish()
        return failures
    }

    /// Prints a finished input's output: a command's stdout as is, a handler's output as JSON.
    /// Returns why a --pipe chunk fails although its command succeeded (its output was cut).
    private func emit(_ result: TaskResult) -> String? {
        if handler != nil {
            print(result.outputText)
        } else if let output = try? result.value(as: ExecHandler.Output.self) {
            if pipe && output.truncated {
                return "its output is over \(Self.pipeOutputBytesMax) bytes (use a smaller --block or -N)"
            }
            FileHandle.standardOutput.write(Data(output.stdout.utf8))
            if !output.stderr.isEmpty { FileHandle.standardError.write(Data(output.stderr.utf8)) }
        }
        return nil
    }

    private func readInputBytes() throws -> [UInt8] {
        if let inputs {
            guard let contents = FileManager.default.contents(atPath: inputs) else { throw CLIError("cannot read --inputs \(inputs)") }
            return Array(contents)
        }
        return Array(FileHandle.standardInput.readDataToEndOfFile())
    }

    private func readInputs() throws -> [String] {
        let data = try readInputBytes()
        var lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    /// Whether the captured words ask for this command's help: `--help` or `-h` before `--`,
    /// or first when there is no `--`. (Capturing the command for passthrough captures these
    /// too, and they would otherwise run as a command named `--help`.)
    static func asksForHelp(_ captured: [String]) -> Bool {
        let isHelp = { (word: String) in word == "--help" || word == "-h" }
        guard let terminator = captured.firstIndex(of: "--") else { return captured.first.map(isHelp) ?? false }
        return captured[..<terminator].contains(where: isHelp)
    }

    /// Replaces `{}` in every argument by `input`; appends it when no argument has `{}`.
    static func substitute(_ argv: [String], with input: String) -> [String] {
        guard argv.contains(where: { $0.contains("{}") }) else { return argv + [input] }
        return argv.map { $0.replacingOccurrences(of: "{}", with: input) }
    }
}
