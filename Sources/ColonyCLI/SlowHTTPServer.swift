import Foundation
import NNG

/// W8's server: answers every request with "ok" after a delay. bench/slow_server.py in a
/// process of its own when python3 and the script are there (a listen backlog of 4096, no
/// threads shared with the contenders' clients); otherwise nng's HTTP server in this process
/// (its backlog of 128 overflows now and then under 400 connections at once, costing a 1 s
/// SYN retransmit to whichever contender meets it).
final class SlowHTTPServer {
    let url: String
    private let process: Process?
    private let input: Pipe?
    private let inProcess: HTTPServer?

    init(delayMilliseconds: Int) throws {
        if let script = BenchPipeWorkloads.benchScript("slow_server.py"), let python = ProgramRun.find("python3") {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: python)
            process.arguments = [script, "--delay-ms", "\(delayMilliseconds)"]
            let input = Pipe()
            let output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            // The first line is its port.
            var line: [UInt8] = []
            while let byte = try output.fileHandleForReading.read(upToCount: 1)?.first, byte != UInt8(ascii: "\n") { line.append(byte) }
            guard let port = Int(String(decoding: line, as: UTF8.self)) else {
                process.terminate()
                throw CLIError("W8: bench/slow_server.py did not print its port")
            }
            self.process = process
            self.input = input
            inProcess = nil
            url = "http://127.0.0.1:\(port)/slow"
            return
        }
        let server = try HTTPServer(url: "http://127.0.0.1:0")
        try server.route("/slow") { _ in
            try? await Task.sleep(for: .milliseconds(delayMilliseconds))
            return HTTPResponse(text: "ok")
        }
        try server.start()
        guard let port = server.boundPort else { throw CLIError("W8: the HTTP server has no port") }
        inProcess = server
        process = nil
        input = nil
        url = "http://127.0.0.1:\(port)/slow"
    }

    func stop() {
        inProcess?.stop()
        try? input?.fileHandleForWriting.close()
        process?.waitUntilExit()
    }
}
