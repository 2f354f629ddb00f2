import ArgumentParser
import ColonyCore
import ColonyModel
import Foundation

/// `--cpus`, `--resource` and `--resource-variant` of `colony submit` and `colony map`.
struct ResourceFlags: ParsableArguments {
    @Option(name: .long, parsing: .unconditional, help: "Slots of its pool the task holds while it runs (default 1).")
    var cpus: Int?

    @Option(name: .long, help: "A resource the task needs, NAME=AMOUNT: gpus=1, gpus=0.5 (shares one GPU), mem=8G (repeatable).")
    var resource: [String] = []

    @Option(name: .long, help: "An alternative set of needs, e.g. 'gpus=1,cpus=4' (repeatable; the first that fits on a node is used, after --cpus/--resource if given).")
    var resourceVariant: [String] = []

    /// The task's alternatives, in order; empty when it asks for nothing beyond one slot.
    func variants() throws -> [ResourceVariant] {
        var base = ResourceVariant()
        if let cpus {
            guard cpus >= 1, cpus <= 4096 else { throw CLIError("--cpus must be 1 to 4096, not \(cpus)") }
            base.cpus = cpus
        }
        for pair in resource {
            guard let parsed = ResourceVariant.parse(pair), pair.contains("=") else {
                throw CLIError("--resource is NAME=AMOUNT (e.g. gpus=1, mem=8G, gpus=0.5), got '\(pair)'")
            }
            if pair.hasPrefix("cpus=") { base.cpus = parsed.cpus }
            for (name, amount) in parsed.amounts {
                guard base.amounts[name] == nil else { throw CLIError("--resource \(name) given twice") }
                base.amounts[name] = amount
            }
        }
        var variants = base == ResourceVariant() && !resourceVariant.isEmpty ? [] : [base]
        for text in resourceVariant {
            guard let variant = ResourceVariant.parse(text) else {
                throw CLIError("--resource-variant is NAME=AMOUNT,... (e.g. 'gpus=1,cpus=4'), got '\(text)'")
            }
            variants.append(variant)
        }
        for variant in variants {
            guard variant.cpus <= 4096 else { throw CLIError("cpus must be 1 to 4096, not \(variant.cpus)") }
            for (name, amount) in variant.amounts where amount > ResourceAmount.one && amount % ResourceAmount.one != 0 {
                throw CLIError("\(name)=\(ResourceAmount.format(amount)): an amount above 1 must be whole (fractions only below 1, e.g. gpus=0.5)")
            }
        }
        return variants == [ResourceVariant()] ? [] : variants
    }
}

/// `colony node --resource`: what the node offers.
enum NodeResourceOption {
    /// `NAME=COUNT` (an amount: `licenses=4`, `mem=64G`), `NAME=ID,ID,...` (ids: `gpus=0,1`;
    /// one id: `gpus=3,`), or `gpus=auto` (the GPUs `nvidia-smi -L` lists).
    static func parse(_ pairs: [String]) throws -> [String: ResourceOffer] {
        var offer: [String: ResourceOffer] = [:]
        for pair in pairs {
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                throw CLIError("--resource is NAME=COUNT or NAME=ID,ID,..., got '\(pair)'")
            }
            let name = String(pair[..<equals])
            let value = String(pair[pair.index(after: equals)...])
            guard name != "cpus" else { throw CLIError("--resource cpus: a node's cpus are its slots (--threads, --processes)") }
            guard offer[name] == nil else { throw CLIError("--resource \(name) given twice") }
            if value == "auto" {
                guard name == "gpus" else { throw CLIError("--resource \(name)=auto: only gpus can be detected") }
                offer[name] = .ids(try detectNVIDIAGPUs())
            } else if !value.contains(","), let amount = ResourceAmount.parse(value) {
                offer[name] = .amount(amount)
            } else {
                let ids = value.split(separator: ",").map(String.init)
                guard !ids.isEmpty, Set(ids).count == ids.count, ids.allSatisfy({ !$0.isEmpty }) else {
                    throw CLIError("--resource \(name): ids must be distinct and non-empty, got '\(value)'")
                }
                offer[name] = .ids(ids)
            }
        }
        return offer
    }

    /// The indexes of the GPUs `nvidia-smi -L` lists ("GPU 0: ..."), refused where it is not.
    static func detectNVIDIAGPUs() throws -> [String] {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
            .map { "\($0)/nvidia-smi" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let path else { throw CLIError("--resource gpus=auto: nvidia-smi is not on PATH; list the GPU ids instead (--resource gpus=0,1)") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["-L"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { throw CLIError("--resource gpus=auto: cannot run \(path): \(error.localizedDescription)") }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let ids = output.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("GPU "), let colon = line.firstIndex(of: ":") else { return nil }
            return String(line[line.index(line.startIndex, offsetBy: 4)..<colon])
        }
        guard process.terminationStatus == 0, !ids.isEmpty else {
            throw CLIError("--resource gpus=auto: nvidia-smi -L found no GPUs (status \(process.terminationStatus))")
        }
        return ids
    }
}
