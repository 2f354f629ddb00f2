import ColonyFuzzing
import Foundation

// Built two ways (see scripts/fuzz.sh):
// - with `-sanitize=fuzzer -D FUZZING`: a libFuzzer target; libFuzzer's own main drives
//   `LLVMFuzzerTestOneInput` and keeps any input that traps.
// - plainly (part of every build): a replayer, `colony-fuzz FILE|DIR...`, that runs saved
//   inputs and exits 1 on a finding, and `colony-fuzz --write-seeds DIR`.

/// Runs async work to completion from libFuzzer's synchronous callback.
func runBlocking(_ input: [UInt8]) -> [String] {
    final class Box: @unchecked Sendable {
        // Written once by the task before `signal`, read after `wait`: the semaphore orders it.
        var problems: [String] = []
    }
    let box = Box()
    let done = DispatchSemaphore(value: 0)
    Task {
        box.problems = await FuzzHarness.run(input)
        done.signal()
    }
    done.wait()
    return box.problems
}

#if FUZZING
/// libFuzzer's entry for programs with their own `main` (FuzzerInterface.h). SwiftPM links an
/// executable's `main` to `colony_fuzz_main`, so libFuzzer's `main` is not used: ours hands
/// the command line to libFuzzer's driver. (Only pointers and an int pass, which the Swift and
/// C calling conventions pass alike on the platforms this runs on.)
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("colony_fuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in
        let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
        let problems = runBlocking(input)
        if !problems.isEmpty {
            fatalError("colony-fuzz finding: \(problems.joined(separator: " | "))")
        }
        return 0
    }
}
#else
@Sendable func printTraceLine(_ line: String) {
    print("  " + line)
}

@main
struct FuzzReplay {
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "--write-seeds", arguments.count == 2 {
            let directory = URL(fileURLWithPath: arguments[1])
            do {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                for seed in FuzzHarness.seeds() {
                    try Data(seed.input).write(to: directory.appendingPathComponent(seed.name))
                }
                print("wrote \(FuzzHarness.seeds().count) seeds to \(directory.path)")
            } catch {
                FileHandle.standardError.write(Data("colony-fuzz: cannot write seeds: \(error.localizedDescription)\n".utf8))
                exit(2)
            }
            return
        }
        guard !arguments.isEmpty, !arguments.contains(where: { $0.hasPrefix("-") }) else {
            FileHandle.standardError.write(Data("""
                usage: colony-fuzz FILE|DIR...     replay saved inputs (exit 1 on a finding;
                                                   COLONY_FUZZ_TRACE=1 prints every reply)
                       colony-fuzz --write-seeds DIR
                The fuzzer itself is built and run by scripts/fuzz.sh.

                """.utf8))
            exit(2)
        }
        var files: [String] = []
        for path in arguments {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                files += names.sorted().map { "\(path)/\($0)" }
            } else {
                files.append(path)
            }
        }
        var findings = 0
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else {
                FileHandle.standardError.write(Data("colony-fuzz: cannot read \(file)\n".utf8))
                exit(2)
            }
            let verbose = ProcessInfo.processInfo.environment["COLONY_FUZZ_TRACE"] != nil
            if verbose { print("\(file):") }
            let problems = await FuzzHarness.run(Array(data), trace: verbose ? printTraceLine : nil)
            if !problems.isEmpty {
                findings += 1
                print("\(file): \(problems.joined(separator: " | "))")
            }
        }
        print("replayed \(files.count) input(s): \(findings) finding(s)")
        if findings > 0 { exit(1) }
    }
}
#endif
