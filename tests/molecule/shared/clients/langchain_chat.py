"""A LangChain user of the appliance: `ChatOpenAI` (langchain-openai) against its OpenAI endpoint.

Usage: langchain_chat.py --base-url http://HOST:8081/v1     (the key, if any, in OPENAI_API_KEY)
Prints one JSON object: the invoke()d answer and the stream()ed chunks.
"""

import argparse
import json
import os
import time

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    args = parser.parse_args()
    llm = ChatOpenAI(model="llama_2", base_url=args.base_url, api_key=os.environ.get("OPENAI_API_KEY") or "unused",
                     temperature=0, max_tokens=32, timeout=120, max_retries=0)
    messages = [SystemMessage("You are a helpful AI assistant."), HumanMessage("What is the capital of France?")]

    started = time.monotonic()
    reply = llm.invoke(messages)
    invoked = time.monotonic() - started

    started = time.monotonic()
    chunks = [chunk for chunk in llm.stream([HumanMessage("Count from one to ten.")])]
    streamed = time.monotonic() - started
    texts = [chunk.content for chunk in chunks if isinstance(chunk.content, str) and chunk.content]
    finish = [chunk.response_metadata.get("finish_reason") for chunk in chunks
              if chunk.response_metadata.get("finish_reason")]

    print(json.dumps({
        "invoke": {"type": reply.type, "content": reply.content,
                   "finish_reason": reply.response_metadata.get("finish_reason"), "seconds": round(invoked, 2)},
        "stream": {"chunks": len(chunks), "content_chunks": len(texts), "text": "".join(texts),
                   "finish_reason": finish[-1] if finish else None, "seconds": round(streamed, 2)},
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
