//! The model's own chat template (`tokenizer.chat_template`), rendered with
//! minijinja the way Hugging Face's `apply_chat_template` renders it with
//! Jinja2: `trim_blocks` and `lstrip_blocks` on, loop controls, Python string
//! methods (`.strip()`, `.startswith()` …), `raise_exception`, and the
//! variables `messages`, `add_generation_prompt`, `bos_token`, `eos_token`.

use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::gguf::{GgufError, GgufFile};
use crate::tokenizer::Tokenizer;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("the model has no chat template (tokenizer.chat_template is missing)")]
    NoTemplate,
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("the chat template does not parse: {0:#}")]
    Syntax(minijinja::Error),
    #[error("the chat template refused the conversation: {0}")]
    Raised(String),
    #[error("rendering the chat template failed: {0:#}")]
    Render(minijinja::Error),
}

/// One chat message (`role` is `system`, `user`, `assistant`, … as the template expects).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

const TEMPLATE_NAME: &str = "chat";
/// The message `raise_exception(msg)` carries out of the template.
const RAISED_PREFIX: &str = "raise_exception: ";

/// A compiled chat template with its special-token variables.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

impl ChatTemplate {
    /// The template stored in `file`, with BOS/EOS spelled by `tokenizer`.
    pub fn from_gguf(file: &GgufFile, tokenizer: &Tokenizer) -> Result<Self, ChatError> {
        let source = match file.get("tokenizer.chat_template") {
            None => return Err(ChatError::NoTemplate),
            Some(_) => file.str("tokenizer.chat_template")?,
        };
        let spell = |id: Option<u32>| {
            id.and_then(|id| tokenizer.token_str(id))
                .unwrap_or_default()
                .to_string()
        };
        Self::new(
            source,
            &spell(tokenizer.bos_id()),
            &spell(tokenizer.eos_id()),
        )
    }

    /// Compiles `source` (a Hugging Face-style Jinja chat template).
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("{RAISED_PREFIX}{msg}"),
                ))
            },
        );
        env.add_template_owned(TEMPLATE_NAME, source.to_string())
            .map_err(ChatError::Syntax)?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the
    /// assistant's reply begins.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        self.render_json(
            &serde_json::to_value(messages).unwrap_or_default(),
            add_generation_prompt,
        )
    }

    /// Renders messages of any JSON shape the template understands (tool
    /// calls, content parts …).
    pub fn render_json(
        &self,
        messages: &serde_json::Value,
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(ChatError::Render)?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| {
                let raised =
                    std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
                        .find_map(|e| {
                            let s = e.to_string();
                            s.find(RAISED_PREFIX)
                                .map(|i| s[i + RAISED_PREFIX.len()..].to_string())
                        });
                match raised {
                    Some(msg) => ChatError::Raised(msg.trim_end_matches(')').to_string()),
                    None => ChatError::Render(e),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_renders_like_jinja2() {
        let t = ChatTemplate::new(CHATML, "<|im_start|>", "<|im_end|>").unwrap();
        let msgs = [ChatMessage::new("user", "Hi")];
        assert_eq!(
            t.render(&msgs, true).unwrap(),
            "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let msgs = [
            ChatMessage::new("system", "S"),
            ChatMessage::new("user", "U"),
        ];
        assert_eq!(
            t.render(&msgs, false).unwrap(),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
        );
    }

    #[test]
    fn trim_blocks_bos_python_methods_and_raise() {
        let src = "{{ bos_token }}\n{% for m in messages %}\n  {% if m.role not in ['user', 'assistant'] %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}\n[{{ m.role|upper }}] {{ m.content.strip() }}{% if m.content.strip().startswith('x') %}!{% endif %}{{ eos_token }}\n{% endfor %}";
        let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
        let out = t
            .render(
                &[
                    ChatMessage::new("user", "  xy "),
                    ChatMessage::new("assistant", "ok"),
                ],
                false,
            )
            .unwrap();
        assert_eq!(out, "<s>\n[USER] xy!</s>\n[ASSISTANT] ok</s>\n");
        let err = t
            .render(&[ChatMessage::new("tool", "x")], false)
            .unwrap_err();
        assert!(
            matches!(&err, ChatError::Raised(m) if m.contains("Only user and assistant roles")),
            "{err}"
        );
        assert!(matches!(
            ChatTemplate::new("{% for %}", "", "").unwrap_err(),
            ChatError::Syntax(_)
        ));
    }
}
