// swift-tools-version: 6.0
import PackageDescription

// The module graph points one way (see docs/ARCHITECTURE.md):
// ColonyModel (value types both sides share) -> ColonyWire (protobuf + mapping) / ColonyCore (scheduling)
// CNNG -> NNG; NNG + ColonyWire -> Colony (the client), ColonyNode (handlers, the node)
// CSQLite -> ColonyStore (the journal, on ColonyCore); ColonyCore + ColonyStore + ColonyWire -> ColonyCoordinator
// everything -> ColonyCLI -> colony. A client-only program builds no coordinator, journal or SQLite.
let package = Package(
    name: "Colony",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "colony", targets: ["colony"]),
        .library(name: "Colony", targets: ["Colony"]),
        .library(name: "ColonyCLI", targets: ["ColonyCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.30.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        // Job files (`colony submit-file`): TOML, and YAML for .yaml/.yml.
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CNNG",
            providers: [.apt(["libnng-dev"])]
        ),
        .target(name: "NNG", dependencies: ["CNNG"]),
        // Plain TCP connections waited on with epoll (the plain-http fetch path).
        .target(name: "CSockets"),
        .target(name: "Sockets", dependencies: ["CSockets"]),
        .systemLibrary(
            name: "CSQLite",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        // The coordinator's journal: the only module touching SQLite.
        .target(name: "ColonyStore", dependencies: ["CSQLite", "ColonyModel", "ColonyCore"]),
        // Tasks, results, statuses and names as values: what the client, the node and the
        // coordinator share. Pure, like the core.
        .target(name: "ColonyModel"),
        .target(name: "ColonyWire", dependencies: ["ColonyModel", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .target(name: "ColonyCore", dependencies: ["ColonyModel"]),
        // The core driven at cluster scale on simulated time (the scale test and `colony bench`).
        .target(name: "ColonySimulation", dependencies: ["ColonyModel", "ColonyCore"]),
        .target(name: "ColonyCoordinator", dependencies: [
            "NNG", "Sockets", "ColonyModel", "ColonyWire", "ColonyCore", "ColonyStore",
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The coordinator's HTTP side: Prometheus metrics, the JSON API and the dashboard.
        .target(name: "ColonyHTTP", dependencies: [
            "NNG", "ColonyModel", "ColonyWire", "ColonyCore", "ColonyCoordinator",
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        // The node side: handlers (`TaskHandler`), the pools, the pull loop. Node executables import it.
        .target(name: "ColonyNode", dependencies: ["NNG", "Sockets", "ColonyModel", "ColonyWire", "Colony"]),
        // The client library: a client only (it never builds the coordinator or the journal).
        .target(name: "Colony", dependencies: ["NNG", "Sockets", "ColonyModel", "ColonyWire"]),
        .target(name: "ColonyCLI", dependencies: [
            "NNG",
            "Colony",
            "ColonyModel",
            "ColonyWire",
            "ColonyCore",
            "ColonyNode",
            "ColonyStore",
            "ColonyCoordinator",
            "ColonySimulation",
            "ColonyHTTP",
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "TOMLKit", package: "TOMLKit"),
            .product(name: "Yams", package: "Yams"),
        ]),
        .executableTarget(name: "colony", dependencies: ["ColonyCLI", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // The README's "your own node executable", built and tested with the package.
        .executableTarget(name: "colony-square-node", dependencies: ["ColonyNode", "ColonyCLI"], path: "Examples/SquareNode"),
        // A program that only submits work: its build graph has no coordinator, journal or SQLite
        // (PackageGraphTests checks it).
        .executableTarget(name: "colony-client-example", dependencies: ["Colony"], path: "Examples/ClientOnly"),
        // The fuzzer's harness (a conversation of raw requests against a fresh coordinator
        // state) and its entry point: a replayer in every build, a libFuzzer target when built
        // by scripts/fuzz.sh.
        .target(name: "ColonyFuzzing", dependencies: ["ColonyModel", "ColonyCoordinator", "ColonyWire"], path: "Fuzz/Harness"),
        .executableTarget(name: "colony-fuzz", dependencies: ["ColonyFuzzing"], path: "Fuzz/Main"),
        .testTarget(name: "NNGTests", dependencies: ["NNG", "CNNG"]),
        .testTarget(name: "SocketsTests", dependencies: ["Sockets"]),
        .testTarget(name: "ColonyWireTests", dependencies: ["ColonyModel", "ColonyWire", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .testTarget(name: "ColonyCoreTests", dependencies: ["ColonyModel", "ColonyCore", "ColonySimulation"]),
        .testTarget(name: "ColonyStoreTests", dependencies: ["ColonyModel", "ColonyStore", "ColonyCore"]),
        .testTarget(name: "ColonyFuzzingTests", dependencies: ["ColonyFuzzing"]),
        .testTarget(name: "ColonyEndToEndTests", dependencies: [
            "Colony", "ColonyModel", "ColonyCore", "ColonyNode", "ColonyCoordinator", "ColonyStore", "ColonyHTTP", "ColonyCLI", "NNG", "ColonyWire", "Sockets",
        ]),
    ],
    swiftLanguageModes: [.v6]
)
