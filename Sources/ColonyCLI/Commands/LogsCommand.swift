import ArgumentParser
import Colony
import Foundation

/// `colony logs TASK_ID...`: what running or finished tasks printed (exec commands' stdout
/// and stderr, handlers' log lines), optionally following it until the tasks end.
struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print tasks' live output (stdout to stdout, stderr and log lines to stderr); --follow until they end.",
        discussion: """
            The coordinator keeps the last 64 KiB of each stream of each task (64 MiB in all, the
            oldest tasks' first; in memory only). Bytes no longer kept show as a line
            "[colony: N bytes dropped]". A retried task's output goes on after "[colony: attempt N]".
            Examples:
              id=$(colony submit exec '{"argv": ["sh", "-c", "echo start; sleep 5; echo done"]}')
              colony logs $id --follow
            """
    )

    @OptionGroup var client: ClientOptions

    @Argument(help: "Task ids (printed by colony submit).")
    var ids: [UInt64]

    @Flag(name: .long, help: "Keep printing new output until every task has ended.")
    var follow = false

    @Option(name: .long, help: "Only this stream: stdout or stderr (default: both).")
    var stream: StreamChoice?

    enum StreamChoice: String, ExpressibleByArgument, CaseIterable {
        case stdout, stderr

        /// What `--stream` asks the coordinator for (nil, no flag: both).
        static func streams(_ choice: StreamChoice?) -> [LogStream] {
            switch choice {
            case .stdout?: [.stdout]
            case .stderr?: [.stderr]
            case nil: []
            }
        }
    }

    func validate() throws {
        guard !ids.isEmpty else { throw ValidationError("give at least one task id") }
        guard ids.count <= 1000 else { throw ValidationError("at most 1000 task ids at once, got \(ids.count)") }
    }

    func run() async throws {
        let streams = StreamChoice.streams(stream)
        try await withClient(client) { colony in
            try await LogPrinter.print(colony, taskIDs: ids, streams: streams, follow: follow)
        }
    }
}

/// Prints tasks' output as `colony logs` does (also for `colony job logs`, with a job's tasks).
enum LogPrinter {
    /// How long one follow request may wait at the coordinator (it holds at most 5 s).
    static let followWait = Duration.seconds(2)

    /// Prints what the coordinator keeps of `taskIDs`' output; with `follow`, goes on until
    /// every task has ended. An id the coordinator does not know fails it with one line,
    /// before anything is printed.
    static func print(_ colony: ColonyClient, taskIDs: [TaskID], streams: [LogStream], follow: Bool) async throws {
        var cursors = taskIDs.map { TaskLogCursor(taskID: $0) }
        var first = true
        var lastPrinted: TaskID?
        let headers = Set(taskIDs).count > 1
        while !cursors.isEmpty {
            let reads = try await colony.logs(of: cursors, streams: streams, wait: follow && !first ? followWait : .zero)
            if first, let unknown = reads.first(where: { !$0.known }) {
                throw CLIError("task \(unknown.taskID) is not known to the coordinator (never submitted, or finished and its output dropped)")
            }
            first = false
            var printed = 0
            for read in reads {
                let bytes = read.chunks.reduce(0) { $0 + $1.bytes.count + ($1.dropped > 0 ? 1 : 0) }
                if bytes > 0 && headers && lastPrinted != read.taskID {
                    write(Array("==> task \(read.taskID) <==\n".utf8), to: .stdout)
                    lastPrinted = read.taskID
                }
                for chunk in read.chunks {
                    if chunk.dropped > 0 { write(Array("[colony: \(chunk.dropped) bytes dropped]\n".utf8), to: chunk.stream) }
                    write(chunk.bytes, to: chunk.stream)
                }
                printed += bytes
            }
            var next: [TaskLogCursor] = []
            for read in reads where read.known && !read.ended {
                next.append(read.next)
            }
            if !follow {
                // Caught up with what was there: the reply was not cut by its size bound.
                if printed < 1 << 20 { return }
                next = reads.map(\.next)
            }
            cursors = next
        }
    }

    private static func write(_ bytes: [UInt8], to stream: LogStream) {
        guard !bytes.isEmpty else { return }
        (stream == .stdout ? FileHandle.standardOutput : FileHandle.standardError).write(Data(bytes))
    }
}
