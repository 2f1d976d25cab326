//! `redial`: the command line of the redial retry middleware. See `redial --help`.

use std::future::Future;
use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::task::Poll;
use std::time::SystemTime;

use redial_cli::args::{self, CallArgs, Command, Data, ExplainArgs, Input, UsageError};
use redial_cli::call;
use redial_cli::explain::explain;

fn main() -> ExitCode {
    let command = match args::parse_with_env(std::env::args_os().skip(1), |var| std::env::var_os(var)) {
        Ok(command) => command,
        Err(e) => return usage_error(&e),
    };
    let output = match command {
        Command::Help(text) => text.to_owned(),
        Command::Version => format!("redial {}\n", env!("CARGO_PKG_VERSION")),
        Command::Explain(a) => match run_explain(&a) {
            Ok(line) => line,
            Err(e) => return usage_error(&e),
        },
        Command::Call(a) => return run_call(*a),
    };
    let mut stdout = io::stdout().lock();
    match stdout.write_all(output.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Best effort: stderr may be gone too.
            let _ = writeln!(io::stderr(), "redial: cannot write the output: {e}");
            ExitCode::from(3)
        }
    }
}

fn usage_error(e: &UsageError) -> ExitCode {
    let _ = writeln!(io::stderr(), "redial: {e}");
    ExitCode::from(2)
}

/// Read the bodies the flags name, explain, and render one line of JSON.
fn run_explain(a: &ExplainArgs) -> Result<String, UsageError> {
    let policy = a.vendor.policy();
    // One byte past each limit is enough to know the limit was passed.
    let body = match &a.body {
        Some(input) => read(input, "--body-file", policy.inspect_limit())?,
        None => Vec::new(),
    };
    let request_body = match &a.request_body {
        Some(input) => Some(read(input, "--request-body-file", policy.replay_limit())?),
        None => None,
    };
    let value =
        explain(a, &body, request_body.as_deref(), SystemTime::now()).map_err(|e| UsageError::new(e.to_string()))?;
    Ok(format!("{value}\n"))
}

/// Build the stack, send, print; 0 when every request succeeded, 1 when some failed, 3 when
/// the output could not be written (the run stops then), 130 when Ctrl-C stopped it.
fn run_call(a: CallArgs) -> ExitCode {
    let body = match &a.data {
        None => Vec::new(),
        Some(Data::Text(text)) => text.clone().into_bytes(),
        // The body is kept in memory to be replayed: read it whole.
        Some(Data::Read(input)) => match read(input, "-d", usize::MAX - 1) {
            Ok(bytes) => bytes,
            Err(e) => return usage_error(&e),
        },
    };
    let (source, layer) = match call::token_source(&a).and_then(|s| call::layer(&a, s.as_ref()).map(|l| (s, l))) {
        Ok(built) => built,
        Err(e) => return usage_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(io::stderr(), "redial: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = Arc::new(call::Output::stdio());
    let finished = runtime.block_on(async {
        // Ctrl-C stops the run with its summary. The handler is registered at the first poll,
        // before the first request; if it cannot be, Ctrl-C ends the process as it would anyway.
        let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
        let first = std::future::poll_fn(|cx| Poll::Ready(ctrl_c.as_mut().poll(cx))).await;
        let stop = async move {
            match first {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => std::future::pending().await,
                Poll::Pending => {
                    if ctrl_c.await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        let stack = call::stack(&layer);
        call::run_until(a, body.into(), stack, source, out.clone(), stop).await
    });
    // Connections still open are closed with the runtime, without waiting.
    runtime.shutdown_background();
    if let Some(e) = out.take_error() {
        let _ = writeln!(io::stderr(), "redial: cannot write the output: {e}");
        return ExitCode::from(3);
    }
    if finished.interrupted {
        // 128 + SIGINT, as a shell reports a command Ctrl-C ended.
        ExitCode::from(130)
    } else if finished.tally.failed() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Read at most `limit + 1` bytes of `input`.
fn read(input: &Input, flag: &str, limit: usize) -> Result<Vec<u8>, UsageError> {
    let max = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut bytes = Vec::new();
    let result = match input {
        Input::Stdin => io::stdin().lock().take(max).read_to_end(&mut bytes),
        Input::File(path) => std::fs::File::open(path).and_then(|f| f.take(max).read_to_end(&mut bytes)),
    };
    result.map(|_| bytes).map_err(|e| {
        let what = match input {
            Input::Stdin => "stdin".to_owned(),
            Input::File(path) => format!("{:?}", path.display().to_string()),
        };
        UsageError::new(format!("{flag}: cannot read {what}: {e}"))
    })
}
