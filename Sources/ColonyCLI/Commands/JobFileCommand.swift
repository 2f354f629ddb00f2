import ArgumentParser
import Colony
import ColonyModel
import ColonyNode
import Foundation

/// `colony submit-file FILE`: submits the tasks a job file describes (see `JobFile`).
struct JobFileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit-file",
        abstract: "Submit the tasks of a job file (TOML, or YAML for .yaml/.yml): commands or handlers, dependencies by name, options.",
        discussion: """
            Prints each task's name and id, or with --wait the tasks' outputs in file order (a
            command's stdout, a handler's output as JSON) and exits 1 if one failed. A file with
            an error (malformed, an unknown key, a dependency missing or in a cycle) is refused in
            one line and nothing is submitted. Example (README: "Job files and live output"):
              colony submit-file Examples/jobs/pipeline.toml --wait
            """
    )

    @OptionGroup var client: ClientOptions

    @Argument(help: "The job file.")
    var file: String

    @Flag(name: .long, help: "Wait for every task and print their outputs; exit 1 if one failed.")
    var wait = false

    func run() async throws {
        try await Self.run(file: file, wait: wait, client: client)
    }

    /// Submits the file's tasks as one job (named as the file names it); prints the job's id
    /// and each task's name and id, or with `wait` the outputs.
    static func run(file: String, wait: Bool, client: ClientOptions) async throws {
        let job = try JobFileCommand.read(file)
        try await withClient(client) { colony in
            let (jobID, ids) = try await JobFileCommand.submit(job, to: colony, detached: !wait)
            guard wait else {
                print("job\t\(jobID)")
                for (task, id) in zip(job.tasks, ids) { print("\(task.name)\t\(id)") }
                return
            }
            try await JobFileCommand.printOutputs(of: job, ids: ids, from: colony)
        }
    }

    /// Reads and checks a job file; a refusal is one line naming the file.
    static func read(_ path: String) throws -> JobFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CLIError("cannot read the job file \(path)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw CLIError("\(path): not UTF-8 text") }
        do {
            return try JobFile.parse(text, format: JobFile.Format(path: path))
        } catch {
            // A decoder may quote a whole line of the file: one line, but not a 200 KB one.
            let line = error.description
            throw CLIError("\(path): \(line.count > 400 ? line.prefix(400) + "..." : line)")
        }
    }

    /// Submits the job's tasks, dependencies first (a submit names its dependencies by id);
    /// returns their ids in file order. If the coordinator refuses a later group, the tasks
    /// already submitted are cancelled, so a refused job leaves nothing queued.
    static func submit(_ job: JobFile, to colony: ColonyClient, detached: Bool) async throws -> (job: JobID, ids: [TaskID]) {
        // Every task's resources are read before anything is submitted.
        let resources = try job.tasks.map { task throws -> [ResourceVariant] in
            guard !task.resources.isEmpty else { return [] }
            let text = task.resources.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            guard let variant = ResourceVariant.parse(text) else {
                throw CLIError("task '\(task.name)': resources are NAME = AMOUNT (cpus = 2, gpus = 1, gpus = 0.5, mem = \"8G\"), got \(text)")
            }
            return [variant]
        }
        var ids = [TaskID?](repeating: nil, count: job.tasks.count)
        // The first wave makes the job (or joins the one the file names); the rest join it.
        var target: JobTarget = job.name.map { .named($0) } ?? .new
        for wave in job.waves {
            let submissions = wave.map { index in
                let task = job.tasks[index]
                var options = task.options
                options.after = task.after.map { ids[$0]! }
                options.resources = resources[index]
                return TaskSubmission(handler: task.handler, input: task.input, options: options, detached: detached)
            }
            do {
                let submitted = try await colony.submit(submissions, job: target)
                target = .existing(submitted.job)
                for (index, id) in zip(wave, submitted.ids) { ids[index] = id }
            } catch {
                let submitted = ids.compactMap { $0 }
                if !submitted.isEmpty { _ = try? await colony.cancel(submitted) }
                throw error
            }
        }
        guard case .existing(let jobID) = target else { return (0, []) }
        return (jobID, ids.map { $0! })
    }

    /// Waits for every task; prints their outputs in file order (a command's stdout as it is,
    /// a handler's output and a newline) and each failure as one line on stderr.
    static func printOutputs(of job: JobFile, ids: [TaskID], from colony: ColonyClient) async throws {
        let results = try await colony.results(of: ids)
        var failed = 0
        for (task, result) in zip(job.tasks, results) {
            guard result.succeeded else {
                failed += 1
                let why = result.cancelled ? "was cancelled" : "failed\(result.node.isEmpty ? "" : " on \(result.node)"): \(result.error)"
                printError("task '\(task.name)' (\(result.id)) \(why)")
                continue
            }
            if task.isCommand, let report = try? JSONDecoder().decode(ExecHandler.Output.self, from: Data(result.output)) {
                FileHandle.standardOutput.write(Data(report.stdout.utf8))
            } else {
                // Not print(): its buffer would reorder these lines with the stdout written above.
                FileHandle.standardOutput.write(Data((result.outputText + "\n").utf8))
            }
        }
        if failed > 0 { throw CLIError("\(failed) of \(job.tasks.count) tasks failed") }
    }
}
