"""The chatbot service: chat API, escalation, agent console, feedback store."""
