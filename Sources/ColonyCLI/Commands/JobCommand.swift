import ArgumentParser
import Colony
import ColonyNode
import Foundation

/// `colony job ...`: jobs from any client. Every submit belongs to a job; `colony map
/// --detach` and `colony submit --detach` print its id and leave it to these.
struct JobCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "job",
        abstract: "List, watch, wait for, read, cancel and forget jobs (each map or submit makes one).",
        discussion: """
            A job is named by its id (as `colony map --detach` prints it) or by its name
            (--job NAME). Its results stay in the coordinator until it is forgotten, so any
            client, on any machine, may read them, as often as it likes.
              id=$(seq 10 | colony map --detach -- sh -c 'echo $(( {} * {} ))')
              colony job wait $id && colony job results $id
            """,
        subcommands: [JobSubmitCommand.self, JobListCommand.self, JobStatusCommand.self, JobWaitCommand.self, JobResultsCommand.self,
                      JobLogsCommand.self, JobCancelCommand.self, JobForgetCommand.self]
    )
}

struct JobListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "The newest jobs: id, name, state, progress, failed, age.")

    @OptionGroup var client: ClientOptions

    @Option(name: .long, help: "Show at most this many jobs.")
    var limit = 100

    func run() async throws {
        guard limit >= 1, limit <= 100_000 else { throw CLIError("--limit must be 1 to 100000") }
        let jobs = try await withClient(client) { try await $0.jobs(limit: limit) }
        print(JobText.table(jobs))
    }
}

struct JobStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "A job's counts, throughput and failures (with reasons).")

    @OptionGroup var client: ClientOptions

    @Argument(help: "The job's id or name.")
    var job: String

    func run() async throws {
        let info = try await withClient(client) { try await $0.job(job) }
        print(JobText.status(info))
    }
}

struct JobWaitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait", abstract: "Wait for every task of a job to finish; exit 1 if any failed or was cancelled.")

    @OptionGroup var client: ClientOptions

    @Argument(help: "The job's id or name.")
    var job: String

    func run() async throws {
        let info = try await withClient(client) { try await $0.wait(forJob: job) }
        print(JobText.status(info))
        if info.counts.failed > 0 || info.counts.cancelled > 0 { throw ExitCode(1) }
    }
}

struct JobResultsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "results",
        abstract: "Print a job's outputs in input order as they arrive (a command's stdout, a handler's JSON); exit 1 if any task failed.")

    @OptionGroup var client: ClientOptions

    @Argument(help: "The job's id or name.")
    var job: String

    func run() async throws {
        let failures = try await withClient(client) { colony -> Int in
            var failures = 0
            var index = 0
            for try await result in colony.results(ofJob: job) {
                if result.succeeded {
                    if let output = try? result.value(as: ExecHandler.Output.self) {
                        FileHandle.standardOutput.write(Data(output.stdout.utf8))
                        if !output.stderr.isEmpty { FileHandle.standardError.write(Data(output.stderr.utf8)) }
                    } else {
                        print(result.outputText)
                    }
                } else {
                    failures += 1
                    printError("task \(result.id) (input \(index + 1)) \(result.cancelled ? "was cancelled" : "failed: \(result.error)")")
                }
                index += 1
            }
            return failures
        }
        if failures > 0 { throw ExitCode(1) }
    }
}

struct JobCancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel a job's queued and running tasks and free its results.")

    @OptionGroup var client: ClientOptions

    @Argument(help: "The job's id or name.")
    var job: String

    func run() async throws {
        let cancelled = try await withClient(client) { try await $0.cancel(job: job) }
        print("cancelled \(cancelled) task(s) of job \(job)")
    }
}

struct JobForgetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "forget", abstract: "Forget an ended job and its results (cancel a running one first).")

    @OptionGroup var client: ClientOptions

    @Argument(help: "The job's id or name.")
    var job: String

    func run() async throws {
        try await withClient(client) { try await $0.forget(job: job) }
        print("forgot job \(job)")
    }
}

/// How jobs read on a terminal (`colony job`, `colony status`).
enum JobText {
    static func table(_ jobs: [JobInfo]) -> String {
        guard !jobs.isEmpty else { return "no jobs" }
        var lines = ["ID\tNAME\tSTATE\tDONE\tFAILED\tAGE"]
        for job in jobs {
            lines.append("\(job.id)\t\(job.name.map(NameCheck.escaped) ?? "-")\t\(job.state.rawValue)\t"
                + "\(job.counts.finished)/\(job.counts.total)\t\(job.counts.failed)\t\(formatAge(job.ageSeconds))")
        }
        return lines.joined(separator: "\n")
    }

    static func status(_ job: JobInfo) -> String {
        let counts = job.counts
        let name = job.name.map { " '\(NameCheck.escaped($0))'" } ?? ""
        let rate = job.elapsedSeconds > 0 ? Double(counts.finished) / job.elapsedSeconds : 0
        var lines = [
            "job \(job.id)\(name): \(job.state.rawValue)\(job.detached ? " (detached)" : ""), \(counts.finished) of \(counts.total) finished",
            "  succeeded \(counts.succeeded), failed \(counts.failed), cancelled \(counts.cancelled); running \(counts.running), queued \(counts.queued), waiting \(counts.waiting)",
            "  \(String(format: "%.1f", rate)) tasks/s over \(formatAge(job.elapsedSeconds)), made \(formatAge(job.ageSeconds)) ago",
        ]
        for failure in job.failures {
            lines.append("  task \(failure.id) (input \(failure.index + 1)) failed (\(failure.reason.rawValue)): \(NameCheck.escaped(failure.error))")
        }
        if counts.failed > job.failures.count { lines.append("  ... and \(counts.failed - job.failures.count) more failures") }
        return lines.joined(separator: "\n")
    }

    static func formatAge(_ seconds: Double) -> String {
        if seconds < 60 { return String(format: "%.0fs", seconds) }
        if seconds < 3600 { return String(format: "%.0fm", seconds / 60) }
        return String(format: "%.1fh", seconds / 3600)
    }
}

extension JobTarget {
    /// `--job X`: digits name a job by id, anything else by name (made if missing); none: a new job.
    init(reference: String?) {
        guard let reference else {
            self = .new
            return
        }
        if !reference.isEmpty, reference.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let id = JobID(reference) {
            self = .existing(id)
        } else {
            self = .named(reference)
        }
    }
}

/// `colony job submit FILE`: the same as `colony submit-file FILE`.
struct JobSubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Submit the tasks of a job file as one job (the same as colony submit-file).")

    @OptionGroup var client: ClientOptions

    @Argument(help: "The job file (TOML, or YAML for .yaml/.yml).")
    var file: String

    @Flag(name: .long, help: "Wait for every task and print their outputs; exit 1 if one failed.")
    var wait = false

    func run() async throws {
        try await JobFileCommand.run(file: file, wait: wait, client: client)
    }
}

/// `colony job logs ID`: the live output of a job's tasks (all of them, or its N-th).
struct JobLogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print the live output of a job's tasks (see colony logs); --task N for its N-th task only (0 is the first).")

    @OptionGroup var client: ClientOptions

    @Argument(help: "The job's id or name.")
    var job: String

    @Option(name: .long, parsing: .unconditional, help: "Only the task at this position in the job (0 is the first).")
    var task: Int?

    @Flag(name: .long, help: "Keep printing new output until the tasks have ended.")
    var follow = false

    @Option(name: .long, help: "Only this stream: stdout or stderr (default: both).")
    var stream: LogsCommand.StreamChoice?

    func run() async throws {
        let streams = LogsCommand.StreamChoice.streams(stream)
        try await withClient(client) { colony in
            let ids = try await colony.taskIDs(ofJob: job)
            var chosen = ids
            if let task {
                guard ids.indices.contains(task) else {
                    throw CLIError("job \(job) has \(ids.count) task(s): --task must be 0 to \(max(0, ids.count - 1)), not \(task)")
                }
                chosen = [ids[task]]
            }
            // A log read names at most 1,000 tasks: larger jobs are read in turns.
            for start in stride(from: 0, to: chosen.count, by: 1000) {
                try await LogPrinter.print(colony, taskIDs: Array(chosen[start..<min(chosen.count, start + 1000)]), streams: streams, follow: follow)
            }
        }
    }
}
