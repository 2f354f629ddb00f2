import ArgumentParser
import ColonyCLI

@main
struct ColonyMain {
    static func main() async {
        await runProcessPoolChildIfRequested()
        let command: any AsyncParsableCommand.Type = ColonyCommand.self
        await command.main(nil)
    }
}
