import ArgumentParser
import Colony
import ColonyModel
import ColonyNode
import Foundation

/// `colony submit HANDLER JSON`: queue one task, optionally wait for its result.
struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Submit one task; with --wait, print its output (JSON) when it finishes.",
        discussion: """
            Examples:
              colony submit primes '{"lo": 0, "hi": 100000}' --wait     # prints 9592
              colony submit echo '"hello"' --wait
              colony submit exec '{"argv": ["sh", "-c", "exit 3"]}' --wait   # prints the report, exits 3
            """
    )

    @OptionGroup var client: ClientOptions

    @Argument(help: "The handler to run (built-ins: echo, sleep, primes, fail).")
    var handler: String

    @Argument(help: "The handler's input as JSON.")
    var input: String

    @Flag(name: .long, help: "Wait for the task and print its output; exit 1 if it failed. An exec task exits with its command's status (128+N for signal N, 124 on timeout).")
    var wait = false

    @Flag(name: .long, help: "With exec --wait: exit 0 whatever the command's status (the report still has it).")
    var allowNonzero = false

    @Flag(name: .long, help: "Print the task's job id instead of its task id (for 'colony job wait/results ID'); the task outlives this client.")
    var detach = false

    @Option(name: .long, help: "Add the task to the job of this name (made if missing) or id instead of a new job.")
    var job: String?

    @OptionGroup var scheduling: TaskOptionFlags

    func validate() throws {
        if detach && wait { throw CLIError("give --detach or --wait, not both") }
    }

    func run() async throws {
        let bytes = Array(input.utf8)
        do {
            _ = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            throw CLIError("input is not valid JSON: \(input.prefix(80)) (strings need quotes: '\"text\"')")
        }
        let options = try scheduling.options()
        let target = JobTarget(reference: job)
        let (id, jobID, finished) = try await withClient(client) { colony -> (TaskID, JobID, TaskResult?) in
            // Without --wait nobody stays to fetch: the task must outlive this client's session.
            let submitted = try await colony.submit([TaskSubmission(handler: handler, input: bytes, options: options, detached: !wait)], job: target)
            let id = submitted.ids[0]
            guard wait else { return (id, submitted.job, nil) }
            let result = try await WaitingNotice.around(colony, url: client.coordinatorURL, handler: handler, options: options) {
                try await colony.result(of: id)
            }
            return (id, submitted.job, result)
        }
        guard let result = finished else {
            print(detach ? jobID : id)
            return
        }
        guard result.succeeded else {
            throw CLIError("task \(id) failed on \(result.node): \(result.error)")
        }
        print(result.outputText)
        if handler == ExecHandler.name, !allowNonzero,
           let report = try? JSONDecoder().decode(ExecHandler.Output.self, from: Data(result.output)), report.shellStatus != 0 {
            throw ExitCode(report.shellStatus)
        }
    }
}
