//! Command-line parsing with the tools' own error format: `ca: error: …` for usage errors
//! (exit 2), help and version on stdout (exit 0) written without panicking, and EXAMPLES
//! paragraphs (`after_help`) that are never wrapped mid-command.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::builder::StyledStr;
use clap::error::ErrorKind;

use super::exit;

/// Parses the process's arguments into `T` the way every Tessera tool does.
///
/// - Usage errors go to stderr as clap renders them, with the tool's prefix:
///   `ca: error: unexpected argument '--bogus' found`, clap's `tip:` lines as `ca: hint: …`, then
///   clap's usage line; `Err(2)`.
/// - `--help`, `-h`, `help SUBCOMMAND` and `--version` go to stdout: `Err(0)`; when stdout
///   cannot be written, `ca: error: cannot write to stdout: …` and `Err(3)` (quietly `Err(0)`
///   when the reader went away).
/// - Flag descriptions are wrapped at the terminal width (`COLUMNS` when stdout is not a
///   terminal), never below 80 columns (a narrower terminal wraps the lines itself, instead of
///   clap putting one word on each line) nor above 100, but `after_help` / `after_long_help`
///   text (the EXAMPLES and EXIT CODES blocks) is shown exactly as written, so an example
///   command stays on one line.
/// - Every option and positional value may start with `-`, so `--days -1` reaches the value's
///   own check ("is not a whole number of days …") instead of clap's "unexpected argument".
/// - clap's closing "For more information, try '--help'." becomes a hint naming the command:
///   `ca: hint: see 'ca issue --help'`.
///
/// Use it as the first line of `main`:
/// ```ignore
/// let cli = match tessera::cli::parse_args::<Cli>(TOOL) {
///     Ok(cli) => cli,
///     Err(code) => return code,
/// };
/// ```
///
/// # Errors
/// The [`ExitCode`] `main` must return when the tool must not run (see above); everything has
/// already been printed.
pub fn parse_args<T: clap::Parser>(tool: &str) -> Result<T, ExitCode> {
    parse_args_from(tool, std::env::args_os())
}

/// [`parse_args`] over the given arguments (the first is the program name).
///
/// # Errors
/// As [`parse_args`].
pub fn parse_args_from<T, I, A>(tool: &str, args: I) -> Result<T, ExitCode>
where
    T: clap::Parser,
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let mut texts = Vec::new();
    let mut command = protect_after_help(T::command(), &mut texts).term_width(help_width());
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let path = command_path(&command, &args);
    let parsed = command
        .try_get_matches_from_mut(args)
        .and_then(|mut matches| T::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut command)));
    parsed.map_err(|error| show_error(tool, &path, &error, &texts))
}

/// The subcommand named on the command line (`ca issue`), for the hint that follows a usage
/// error; the tool's name alone when there is none.
fn command_path(command: &clap::Command, args: &[OsString]) -> String {
    let mut path = vec![command.get_name().to_string()];
    let mut current = command;
    for arg in args.iter().skip(1) {
        let Some(word) = arg.to_str() else { continue };
        if let Some(sub) = current.find_subcommand(word) {
            path.push(sub.get_name().to_string());
            current = sub;
        }
    }
    path.join(" ")
}

/// Replaces every `after_help` / `after_long_help` in the command tree with a marker (one word,
/// which clap's wrapping cannot break), keeping the texts, so [`show_error`] can put them back
/// unwrapped.
///
/// Also lets every value start with `-` (see [`parse_args`]).
fn protect_after_help(mut command: clap::Command, texts: &mut Vec<StyledStr>) -> clap::Command {
    command = command.mut_args(|arg| {
        if arg.get_action().takes_values() {
            arg.allow_negative_numbers(true)
        } else {
            arg
        }
    });
    if let Some(text) = command.get_after_help().cloned() {
        command = command.after_help(marker(texts.len()));
        texts.push(text);
    }
    if let Some(text) = command.get_after_long_help().cloned() {
        command = command.after_long_help(marker(texts.len()));
        texts.push(text);
    }
    let names: Vec<String> = command.get_subcommands().map(|s| s.get_name().to_string()).collect();
    for name in names {
        command = command.mut_subcommand(name, |sub| protect_after_help(sub, texts));
    }
    command
}

/// The narrowest width help is wrapped at: below it clap would put one word on each line.
pub(crate) const MIN_HELP_WIDTH: usize = 80;

/// The width to wrap help at: the terminal's (or `COLUMNS`), kept within
/// [`MIN_HELP_WIDTH`]..=100.
fn help_width() -> usize {
    let detected = terminal_size::terminal_size()
        .map(|(width, _)| usize::from(width.0))
        .or_else(|| {
            std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.trim().parse::<usize>().ok())
        });
    detected.map_or(100, |width| width.clamp(MIN_HELP_WIDTH, 100))
}

fn marker(index: usize) -> String {
    format!("@@tessera-after-help-{index}@@")
}

fn restore_after_help(mut rendered: String, texts: &[StyledStr], colour: bool) -> String {
    for (index, text) in texts.iter().enumerate() {
        let marker = marker(index);
        if rendered.contains(&marker) {
            let text = if colour {
                text.ansi().to_string()
            } else {
                text.to_string()
            };
            rendered = rendered.replace(&marker, &text);
        }
    }
    rendered
}

fn show_error(tool: &str, path: &str, error: &clap::Error, texts: &[StyledStr]) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let colour = colour_on(&std::io::stdout());
            let rendered = restore_after_help(styled(&error.render(), colour), texts, colour);
            match crate::out!("{rendered}") {
                Ok(()) => ExitCode::from(exit::OK),
                Err(e) => super::report(tool, &e, &super::verdict(&e, super::Role::Judge, |_| None)),
            }
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let rendered = restore_after_help(error.render().to_string(), texts, false);
            crate::errln!("{tool}: error: a command or argument is required\n");
            super::write_stderr(format_args!("{rendered}"));
            ExitCode::from(exit::USAGE)
        }
        _ => {
            let rendered = restore_after_help(error.render().to_string(), texts, false);
            super::write_stderr(format_args!(
                "{}",
                printable_lines(&usage_error_text(tool, path, &rendered))
            ));
            ExitCode::from(exit::USAGE)
        }
    }
}

/// `text` with every line passed through [`super::printable`] (the line breaks kept): clap's
/// usage errors quote the value given, which may hold control characters.
fn printable_lines(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| match line.strip_suffix('\n') {
            Some(line) => format!("{}\n", super::printable(line)),
            None => super::printable(line),
        })
        .collect()
}

/// clap's error text in the tools' words: `error:` and `  tip:` lines get the tool's prefix,
/// and "For more information, try '--help'." becomes `tool: hint: see 'COMMAND --help'`.
fn usage_error_text(tool: &str, command: &str, rendered: &str) -> String {
    let mut text = String::with_capacity(rendered.len() + 2 * tool.len());
    for line in rendered.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("error: ") {
            text.push_str(&format!("{tool}: error: {rest}"));
        } else if let Some(rest) = line.trim_start().strip_prefix("tip: ") {
            text.push_str(&format!("{tool}: hint: {rest}"));
        } else if line.trim_start().starts_with("For more information, try '--help'") {
            text.push_str(&format!("{tool}: hint: see '{command} --help'\n"));
        } else {
            text.push_str(line);
        }
    }
    if !text.starts_with(&format!("{tool}: error: ")) {
        text.insert_str(0, &format!("{tool}: error: "));
    }
    text
}

fn styled(text: &StyledStr, colour: bool) -> String {
    if colour {
        text.ansi().to_string()
    } else {
        text.to_string()
    }
}

fn colour_on(stream: &impl std::io::IsTerminal) -> bool {
    std::env::var_os("NO_COLOR").is_none() && stream.is_terminal()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;

    #[test]
    fn usage_errors_carry_the_tool_prefix() {
        let rendered = "error: unexpected argument '--bogus' found\n\n  tip: to pass '--bogus' as a value, use \
                        '-- --bogus'\n\nUsage: ca list [OPTIONS]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_error_text("ca", "ca list", rendered),
            "ca: error: unexpected argument '--bogus' found\n\nca: hint: to pass '--bogus' as a value, use \
             '-- --bogus'\n\nUsage: ca list [OPTIONS]\n\nca: hint: see 'ca list --help'\n"
        );
        assert_eq!(usage_error_text("ca", "ca", "odd\n"), "ca: error: odd\n");
    }

    #[derive(Debug, clap::Parser)]
    #[command(
        name = "t",
        after_help = "EXAMPLES:\n  t run --a-rather-long-flag value --another-flag value2"
    )]
    struct Args {
        /// A flag with a description long enough to be wrapped at a narrow terminal width, for sure.
        #[arg(long)]
        flag: Option<u32>,
    }

    #[test]
    fn after_help_is_not_wrapped() {
        let mut texts = Vec::new();
        let mut command = protect_after_help(<Args as clap::CommandFactory>::command(), &mut texts).term_width(30);
        let help = command.render_help().to_string();
        let help = restore_after_help(help, &texts, false);
        assert!(
            help.contains("\n  t run --a-rather-long-flag value --another-flag value2"),
            "{help}"
        );
        // The flag's description is still wrapped.
        assert!(
            help.lines().filter(|l| l.contains("wrapped")).all(|l| l.len() <= 30),
            "{help}"
        );
    }

    #[derive(Debug, clap::Parser)]
    #[command(name = "t")]
    enum Nested {
        /// A subcommand.
        Run {
            /// A signed count.
            #[arg(long)]
            count: i32,
        },
    }

    #[test]
    fn values_may_start_with_a_hyphen_and_errors_name_the_subcommand() {
        match parse_args_from::<Nested, _, _>("t", ["t", "run", "--count", "-1"]) {
            Ok(Nested::Run { count }) => assert_eq!(count, -1),
            Err(code) => panic!("{code:?}"),
        }
        let command = protect_after_help(<Nested as clap::CommandFactory>::command(), &mut Vec::new());
        let args: Vec<OsString> = ["t", "--x", "run", "--count"].iter().map(OsString::from).collect();
        assert_eq!(command_path(&command, &args), "t run");
        assert_eq!(command_path(&command, &args[..1]), "t");
    }

    #[test]
    fn good_arguments_parse() {
        let args: Args = parse_args_from("t", ["t", "--flag", "7"]).expect("parses");
        assert_eq!(args.flag, Some(7));
    }
}
