// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Kiln",
    products: [
        .library(name: "Kiln", targets: ["Kiln"]),
        .library(name: "KilnModels", targets: ["KilnModels"]),
        .library(name: "KilnData", targets: ["KilnData"]),
        // Data-parallel training over Open MPI (builds without MPI too; see Docs/Distributed.md).
        .library(name: "KilnMPI", targets: ["KilnMPI"]),
        .executable(name: "graphc", targets: ["graphc"]),
        .executable(name: "kiln-bench", targets: ["KilnBench"]),
        .executable(name: "landuse", targets: ["landuse"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
        // SHA-256 of downloaded weights (torch hub's hash check).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // ONNX import/export (generated types in Sources/Kiln/IO/ONNX, scripts/generate-onnx-swift.sh).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        // `swift package generate-documentation --target Kiln` (the DocC catalog in Sources/Kiln/Kiln.docc).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // System libraries (Debian: libopenblas-dev liblapacke-dev libjpeg-dev libtiff-dev libpng-dev).
        .systemLibrary(name: "COpenBLAS", path: "Sources/CSystem/COpenBLAS"),
        .systemLibrary(name: "CJPEG", path: "Sources/CSystem/CJPEG"),
        .systemLibrary(name: "CTIFF", path: "Sources/CSystem/CTIFF"),
        .systemLibrary(name: "CPNG", path: "Sources/CSystem/CPNG"),
        // Open MPI's flags through pkg-config (libopenmpi-dev); absent, CKilnMPI compiles its stubs.
        .systemLibrary(name: "CMPI", path: "Sources/CSystem/CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),

        // Hot loops: C + OpenBLAS, compiled once per instruction set and chosen at run time
        // (isa_*.c, dispatch.c), parallel through their own thread pool (parallel.c). No unsafe
        // flags, so Kiln builds as a dependency pinned to a version (Docs/Architecture.md).
        .target(
            name: "CKernels",
            dependencies: ["COpenBLAS"],
            exclude: ["kernels"],
            linkerSettings: [
                .linkedLibrary("openblas")
            ]
        ),
        .target(
            name: "Kiln",
            dependencies: [
                "CKernels", .product(name: "ZIPFoundation", package: "ZIPFoundation"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        // The MPI calls of data-parallel training, real when <mpi.h> is found, stubs otherwise.
        .target(name: "CKilnMPI", dependencies: ["CMPI"]),
        .target(name: "KilnMPI", dependencies: ["Kiln", "CKilnMPI"]),
        // libjpeg/libpng/libtiff behind an error-returning C API (libjpeg's default handler exits).
        .target(
            name: "CImageCodecs", dependencies: ["CJPEG", "CPNG", "CTIFF"],
            linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png16"), .linkedLibrary("tiff")]),
        // Images, datasets, transforms, data loading, the synthetic land-use set.
        .target(name: "KilnData", dependencies: ["Kiln", "CImageCodecs"]),
        // The land-use study: training loop, metrics, experiments, report (Markdown + SVG).
        .target(name: "KilnStudy", dependencies: ["Kiln", "KilnModels", "KilnData", "COpenBLAS"]),
        .executableTarget(
            name: "landuse",
            dependencies: [
                "Kiln", "KilnModels", "KilnData", "KilnStudy", "KilnMPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(name: "KilnModels", dependencies: ["Kiln", .product(name: "Crypto", package: "swift-crypto")], path: "Models"),
        .executableTarget(
            name: "graphc",
            dependencies: ["Kiln", "KilnModels", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "KilnBench",
            dependencies: [
                "Kiln", "KilnMPI", "KilnModels", "CKernels", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/KilnBench"
        ),
        .testTarget(name: "KilnTests", dependencies: ["Kiln", "CKernels"]),
        // Fixtures live in Tests/Fixtures and are found through #filePath (no resource bundle needed).
        .testTarget(
            name: "KilnModelsTests",
            dependencies: [
                "Kiln", "KilnModels", "KilnData", .product(name: "ZIPFoundation", package: "ZIPFoundation"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .testTarget(name: "KilnDataTests", dependencies: ["Kiln", "KilnData", "CImageCodecs"]),
        .testTarget(name: "KilnStudyTests", dependencies: ["Kiln", "KilnModels", "KilnData", "KilnStudy", "KilnMPI"]),
    ]
)
