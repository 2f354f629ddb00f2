import ArgumentParser

/// `colony`: run a coordinator or a node, submit work, watch the cluster.
public struct ColonyCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "colony",
        abstract: "A distributed worker cluster: a coordinator hands tasks to nodes that pull them.",
        discussion: """
            Start with `colony up`: a coordinator and a local node in one process, running a demo.
            On several machines: `colony coordinator` on one, `colony node --coordinator URL` on each.
            Client commands read the coordinator's URL from --coordinator, else $COLONY_COORDINATOR,
            else tcp://127.0.0.1:7411.
            """,
        version: "0.1.0",
        subcommands: [UpCommand.self, CoordinatorCommand.self, NodeCommand.self, SubmitCommand.self, JobFileCommand.self, MapCommand.self, ResultCommand.self,
                      TasksCommand.self, LogsCommand.self, CancelCommand.self, DrainCommand.self, CounterCommand.self, LimitCommand.self, StatusCommand.self, TopCommand.self,
                      BenchCommand.self, JobCommand.self]
    )

    public init() {}
}
