// A user's own node executable: Colony's built-in handlers plus `square`, with exactly the
// flags of `colony node`. Built with the package, so the README's example always compiles:
//   swift run colony-square-node --coordinator tcp://127.0.0.1:7411 --threads 2
import ColonyNode
import ColonyCLI

/// Squares an integer.
struct Square: TaskHandler {
    static let name = "square"
    func run(_ input: Int, context: TaskContext) async throws -> Int { input * input }
}

@main
struct SquareNode {
    static func main() async {
        await ColonyNodeMain.main(handlers: [AnyTaskHandler(Square())])
    }
}
