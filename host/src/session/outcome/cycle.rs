//! The outcome loop's decisions, pure: after a turn, evaluate (or not);
//! after a verdict, revise, acknowledge the limit, or finish. The engine
//! carries them out (events, the grader call, the next turn's input).
//!
//! Iterations are 0-indexed evaluation rounds; `max_iterations` rounds are
//! graded at most. A round that still needs revision at the limit ends
//! the outcome as `max_iterations_reached`, and one last turn tells the
//! agent so (it is not graded).

use serde_json::{Value, json};

use super::Outcome;
use super::grader::{Grade, Verdict};

/// Where the outcome is.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// The agent works on it (its turn runs).
    Working,
    /// The grader scores the turn; `start_id` is the
    /// `span.outcome_evaluation_start` event's id.
    Evaluating { start_id: String },
    /// The limit was reached; the agent's last turn runs, ungraded.
    Acknowledging,
}

/// The outcome being worked on, and the agent's result for this round.
#[derive(Debug, Clone, PartialEq)]
pub struct Cycle {
    pub outcome: Outcome,
    pub iteration: u32,
    pub phase: Phase,
    /// The text of the agent's messages this round (what the grader reads).
    pub result: Vec<String>,
}

/// What ends an outcome without a grader verdict, or with one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Satisfied,
    MaxIterationsReached,
    Failed,
    Interrupted,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Satisfied => "satisfied",
            End::MaxIterationsReached => "max_iterations_reached",
            End::Failed => "failed",
            End::Interrupted => "interrupted",
        }
    }
}

/// After a turn of the outcome ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterTurn {
    /// Grade the round.
    Evaluate,
    /// The outcome is over (its last, acknowledging turn ended): go idle.
    Done,
    /// The turn did not end normally (an interrupt, the budget, a
    /// refusal): the outcome ends so, and the session goes idle.
    Ended(End, String),
}

/// After the grader's verdict: the `span.outcome_evaluation_end` result,
/// and what follows.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterVerdict {
    /// Another round: this is the agent's next input.
    Revise(String),
    /// The limit is reached: one last (ungraded) turn with this input.
    Acknowledge(String),
    /// The outcome is over; the session goes idle.
    Finish,
}

impl Cycle {
    pub fn new(outcome: Outcome) -> Self {
        Cycle { outcome, iteration: 0, phase: Phase::Working, result: Vec::new() }
    }

    pub fn evaluating(&self) -> Option<&str> {
        match &self.phase {
            Phase::Evaluating { start_id } => Some(start_id),
            _ => None,
        }
    }

    /// A turn ended with `stop_reason`; `interrupted` when the user
    /// interrupted it.
    pub fn after_turn(&self, stop_reason: &Value, interrupted: bool) -> AfterTurn {
        if self.phase == Phase::Acknowledging {
            return AfterTurn::Done;
        }
        if interrupted {
            return AfterTurn::Ended(End::Interrupted, "the user interrupted the session".into());
        }
        match stop_reason.get("type").and_then(Value::as_str) {
            Some("end_turn") => AfterTurn::Evaluate,
            other => AfterTurn::Ended(
                End::Failed,
                format!("the turn ended with stop reason `{}` before it could be evaluated", other.unwrap_or("?")),
            ),
        }
    }

    /// The grader's verdict on this round: the result it ends with, and
    /// what follows.
    pub fn after_verdict(&self, grade: &Grade) -> (&'static str, AfterVerdict) {
        let last = self.iteration + 1 >= self.outcome.max_iterations;
        match grade.verdict {
            Verdict::Satisfied => (End::Satisfied.as_str(), AfterVerdict::Finish),
            Verdict::Failed => (End::Failed.as_str(), AfterVerdict::Finish),
            Verdict::NeedsRevision if last => {
                (End::MaxIterationsReached.as_str(), AfterVerdict::Acknowledge(acknowledge_text(&grade.explanation)))
            }
            Verdict::NeedsRevision => ("needs_revision", AfterVerdict::Revise(revise_text(&grade.explanation))),
        }
    }
}

/// A round to grade: the runner calls the grader with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub outcome: Outcome,
    pub iteration: u32,
    /// The agent's result for the round (its messages' text).
    pub result: String,
}

/// What the grader call came to: a verdict or why there is none (the
/// call failed, or its answer was malformed), and the tokens it used.
#[derive(Debug, Clone, PartialEq)]
pub struct Graded {
    pub grade: Result<Grade, String>,
    pub usage: Value,
}

/// The agent's first input for an outcome.
pub fn work_text(o: &Outcome) -> String {
    format!("{}\n\nYour work will be graded against this rubric when you end your turn:\n{}", o.description, o.rubric)
}

fn revise_text(feedback: &str) -> String {
    format!("A grader reviewed your work against the rubric and asks for a revision:\n{feedback}\n\nRevise your work.")
}

fn acknowledge_text(feedback: &str) -> String {
    format!(
        "A grader reviewed your work against the rubric and it still needs revision:\n{feedback}\n\nThe outcome's \
         evaluation limit is reached; no further evaluation follows. Summarize where the work stands."
    )
}

/// A `user.message` body the runtime takes for `text`.
pub fn message_body(text: &str) -> Value {
    json!({"type": "user.message", "content": [{"type": "text", "text": text}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycle(iteration: u32, max: u32, phase: Phase) -> Cycle {
        let outcome = Outcome { id: "outc_1".into(), description: "d".into(), rubric: "r".into(), max_iterations: max };
        Cycle { outcome, iteration, phase, result: Vec::new() }
    }

    #[test]
    fn after_turn_decisions() {
        let end = json!({"type": "end_turn"});
        let working = cycle(0, 3, Phase::Working);
        assert_eq!(working.after_turn(&end, false), AfterTurn::Evaluate);
        assert!(matches!(working.after_turn(&end, true), AfterTurn::Ended(End::Interrupted, _)));
        let budget = working.after_turn(&json!({"type": "budget_reached"}), false);
        assert!(matches!(&budget, AfterTurn::Ended(End::Failed, m) if m.contains("budget_reached")), "{budget:?}");
        assert_eq!(cycle(2, 3, Phase::Acknowledging).after_turn(&end, false), AfterTurn::Done);
        assert_eq!(cycle(2, 3, Phase::Acknowledging).after_turn(&end, true), AfterTurn::Done);
    }

    #[test]
    fn verdict_decisions() {
        let g = |verdict| Grade { verdict, explanation: "line 2".into() };
        let cases = [
            (0, 3, Verdict::Satisfied, "satisfied", "finish"),
            (0, 3, Verdict::Failed, "failed", "finish"),
            (0, 3, Verdict::NeedsRevision, "needs_revision", "revise"),
            (1, 3, Verdict::NeedsRevision, "needs_revision", "revise"),
            (2, 3, Verdict::NeedsRevision, "max_iterations_reached", "acknowledge"),
            (2, 3, Verdict::Satisfied, "satisfied", "finish"),
            (0, 1, Verdict::NeedsRevision, "max_iterations_reached", "acknowledge"),
        ];
        for (iteration, max, verdict, result, next) in cases {
            let c = cycle(iteration, max, Phase::Evaluating { start_id: "sevt_s".into() });
            let (r, after) = c.after_verdict(&g(verdict));
            let kind = match &after {
                AfterVerdict::Revise(t) | AfterVerdict::Acknowledge(t) => {
                    assert!(t.contains("line 2"), "the feedback reaches the agent: {t}");
                    if matches!(after, AfterVerdict::Revise(_)) { "revise" } else { "acknowledge" }
                }
                AfterVerdict::Finish => "finish",
            };
            assert_eq!((r, kind), (result, next), "{iteration}/{max} {verdict:?}");
        }
    }
}
