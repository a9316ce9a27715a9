import ApusBroker
import ArgumentParser
import Foundation

/// `apus user`: SCRAM credentials through Kafka's AdminClient APIs, so it manages any
/// Kafka-compatible cluster's users. The password is salted and iterated here; only the salt and
/// the salted password (PBKDF2) are sent, as Kafka's own tools do.
struct UserCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user", abstract: "SASL/SCRAM users: list, set a password, delete.",
        subcommands: [List.self, Set.self, Delete.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Users and their SCRAM mechanisms (DescribeUserScramCredentials).")
        @OptionGroup var options: AdminOptions
        @Argument(help: "Users to show (none: every user).") var users: [String] = []

        struct Row: Encodable { var user: String; var mechanism: String; var iterations: Int32 }

        func run() throws {
            let found = try options.admin().describeScramUsers(users.isEmpty ? nil : users)
            let rows = found.flatMap { user in
                user.mechanisms.map { Row(user: user.user, mechanism: ScramMechanism(rawValue: $0.mechanism)?.name ?? "\($0.mechanism)", iterations: $0.iterations) }
            }
            try options.output(rows) { AdminOptions.columns([["USER", "MECHANISM", "ITERATIONS"]] + rows.map { [$0.user, $0.mechanism, String($0.iterations)] }) }
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a user or change its password (AlterUserScramCredentials).")
        @OptionGroup var options: AdminOptions
        @Argument var user: String
        @Option(help: "SCRAM-SHA-256 or SCRAM-SHA-512 (repeatable; default both). PLAIN clients are checked against these too.")
        var mechanism: [String] = []
        @Option(help: "PBKDF2 iterations (Kafka accepts 4096...16384).") var iterations: Int32 = 8192
        @Option(help: "A file whose first line is the password (or set APUS_USER_PASSWORD; --password shows it to `ps`).")
        var passwordFile: String?
        @Option(help: "The password (visible to other users of this machine while the command runs).") var password: String?

        func run() throws {
            let secret: String
            if let password {
                secret = password
            } else if let passwordFile {
                secret = String(try String(contentsOfFile: passwordFile, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
            } else if let env = ProcessInfo.processInfo.environment["APUS_USER_PASSWORD"] {
                secret = env
            } else {
                throw ValidationError("give the password with --password-file, APUS_USER_PASSWORD or --password")
            }
            guard !secret.isEmpty else { throw ValidationError("the password is empty") }
            let mechanisms = try (mechanism.isEmpty ? ["SCRAM-SHA-256", "SCRAM-SHA-512"] : mechanism).map { name in
                guard let m = ScramMechanism(name: name) else { throw ValidationError("unknown mechanism \(name): SCRAM-SHA-256 or SCRAM-SHA-512") }
                return m
            }
            let admin = try options.admin()
            for m in mechanisms {
                let salt = secureRandomBytes(32)
                try admin.alterScramUser(user, mechanism: m.rawValue, salt: salt,
                                         saltedPassword: m.saltedPassword(secret, salt: salt, iterations: iterations), iterations: iterations)
            }
            try options.output(["user": user, "mechanisms": mechanisms.map(\.name).joined(separator: ",")]) {
                "set \(mechanisms.map(\.name).joined(separator: ", ")) credentials of \(user)\n"
            }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a user's SCRAM credentials.")
        @OptionGroup var options: AdminOptions
        @Argument var user: String
        @Option(help: "Only this mechanism (repeatable; default every one the user has).") var mechanism: [String] = []

        func run() throws {
            let admin = try options.admin()
            var names = mechanism
            if names.isEmpty {
                names = try admin.describeScramUsers([user]).flatMap { $0.mechanisms.compactMap { ScramMechanism(rawValue: $0.mechanism)?.name } }
            }
            for name in names {
                guard let m = ScramMechanism(name: name) else { throw ValidationError("unknown mechanism \(name)") }
                try admin.alterScramUser(user, mechanism: m.rawValue, saltedPassword: nil)
            }
            try options.output(["deleted": user]) { "deleted \(names.joined(separator: ", ")) credentials of \(user)\n" }
        }
    }
}
