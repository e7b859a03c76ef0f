"""Hand-written text the example-data generator draws from (questions, answers, conversations).

Everything here is static; all randomness (selection, scores, ids, timestamps) lives in
:mod:`app.services.example_data`.
"""

from __future__ import annotations

from typing import Any, Final

# ---------------------------------------------------------------------------------------------
# SaaS customer-support questions and 1–3 sentence answers (monitoring samples). All distinct.
# ---------------------------------------------------------------------------------------------
SUPPORT_QA: Final[tuple[tuple[str, str], ...]] = (
    (
        "What are your support hours?",
        "Our support team is available Monday to Friday, 08:00–20:00 UTC. Enterprise plans also include "
        "24/7 on-call coverage for critical incidents.",
    ),
    (
        "How do I reset my password?",
        'Click "Forgot password" on the sign-in page and enter your work email. The reset link we send '
        "stays valid for 30 minutes.",
    ),
    (
        "Can I get a refund for my annual plan?",
        "Annual plans are fully refundable within 30 days of purchase. After that we credit the unused "
        "months to your account instead of refunding them.",
    ),
    (
        "How do I enable SSO for my workspace?",
        "Go to Settings → Security → Single sign-on and choose SAML or OIDC. SSO is available on the "
        "Business and Enterprise plans.",
    ),
    (
        "What are the API rate limits?",
        "The REST API allows 600 requests per minute per workspace token. Every response carries "
        "X-RateLimit-Remaining so you can back off before you hit the limit.",
    ),
    (
        "How do I set up a webhook?",
        "Open Settings → Integrations → Webhooks, add your HTTPS endpoint and pick the events you want. "
        "Every payload is signed with your webhook secret.",
    ),
    (
        "Why are my webhook deliveries failing?",
        "Deliveries fail when your endpoint answers with a non-2xx status or takes longer than 10 seconds. "
        "The delivery log shows the response code, and we retry with exponential backoff for 24 hours.",
    ),
    (
        "How do I invite a teammate?",
        "Open Settings → Members and click Invite. Enter their email address and choose a role; the "
        "invitation expires after 7 days.",
    ),
    (
        "How can I change my billing email?",
        "Workspace owners can change it under Billing → Billing contact. Invoices and payment receipts go "
        "to the new address from the next billing cycle.",
    ),
    (
        "Do you offer a discount for nonprofits?",
        "Yes, registered nonprofits get 50% off any paid plan. Send proof of status to billing@example.com "
        "and we apply the discount to your next invoice.",
    ),
    (
        "How do I export my data?",
        "Go to Settings → Data → Export and choose CSV or JSON. Large exports are prepared in the background "
        "and emailed to you as a download link.",
    ),
    (
        "How do I delete my account?",
        "The workspace owner can delete the workspace under Settings → Advanced → Delete workspace. "
        "Deletion is permanent after a 14-day grace period.",
    ),
    (
        "Can I change my plan mid-cycle?",
        "Yes. Upgrades take effect immediately and are prorated; downgrades apply at the start of the next "
        "billing cycle.",
    ),
    (
        "How do I enable two-factor authentication?",
        "Open your profile, select Security and turn on two-factor authentication. You can use any TOTP "
        "app or a hardware security key.",
    ),
    (
        "Where can I download my invoices?",
        "All invoices are under Billing → Invoices as PDF files. Owners and billing admins can download "
        "them at any time.",
    ),
    (
        "Which payment methods do you accept?",
        "We accept Visa, Mastercard and American Express, plus SEPA direct debit in the EU. Annual "
        "Enterprise contracts can also be paid by bank transfer.",
    ),
    (
        "How do I rotate an API key?",
        "Create a new key under Settings → API, update your integrations, then revoke the old key. Both "
        "keys work in parallel until you revoke one.",
    ),
    (
        "Is there a sandbox environment for testing?",
        "Every paid workspace can create a sandbox under Settings → Environments. Sandbox data is isolated "
        "and never billed.",
    ),
    (
        "How do I add a custom domain?",
        "Add the domain under Settings → Domains and create the CNAME record we show you. Verification "
        "usually completes within an hour of DNS propagation.",
    ),
    (
        "Why was my card declined?",
        "Declines come from your bank, most often because of an expired card or an international-payment "
        "block. Ask your bank to approve the charge, then retry it under Billing.",
    ),
    (
        "How long do you keep audit logs?",
        "Audit logs are kept for 90 days on Business plans and for one year on Enterprise. You can stream "
        "them to your SIEM for longer retention.",
    ),
    (
        "Can I restrict access by IP address?",
        "Enterprise workspaces can set an IP allow-list under Settings → Security. Requests from other "
        "addresses are rejected, including API calls.",
    ),
    (
        "How do I connect Slack notifications?",
        "Install the Slack app from Settings → Integrations and choose a channel. You can pick which "
        "events post to Slack per project.",
    ),
    (
        "Is my data encrypted at rest?",
        "Yes, all customer data is encrypted at rest with AES-256 and in transit with TLS 1.2 or newer.",
    ),
    (
        "Where is my data hosted?",
        "New workspaces are hosted in the EU (Frankfurt) or the US (Virginia), chosen at sign-up. The "
        "region is shown under Settings → Data residency.",
    ),
    (
        "Do you support SCIM provisioning?",
        "Yes, SCIM 2.0 is available on Enterprise plans. Generate a SCIM token under Settings → Security "
        "and paste it into your identity provider.",
    ),
    (
        "How do I transfer workspace ownership?",
        "The current owner opens Settings → Members, selects another admin and chooses Transfer ownership. "
        "The new owner must confirm by email.",
    ),
    (
        "Can I pause my subscription?",
        "Monthly plans can be paused for up to three months from Billing → Subscription. Your data stays "
        "intact while the workspace is read-only.",
    ),
    (
        "How do I import users from a CSV file?",
        "Go to Settings → Members → Import and upload a CSV with email and role columns. We send "
        "invitations once the preview looks right.",
    ),
    (
        "What happens when my trial ends?",
        "Your workspace switches to the Free plan and paid features become read-only. Nothing is deleted, "
        "and upgrading restores everything instantly.",
    ),
    (
        "How do I cancel my subscription?",
        "Owners can cancel under Billing → Subscription → Cancel plan. The workspace stays on the paid plan "
        "until the end of the current period.",
    ),
    (
        "How can I see who changed a setting?",
        "Open Settings → Audit log and filter by the setting or by member. Each entry shows the old value, "
        "the new value and who made the change.",
    ),
    (
        "Why am I not receiving email notifications?",
        "Check your notification preferences under Profile → Notifications and your spam folder. If your "
        "company filters mail, allow-list notifications@example.com.",
    ),
    (
        "Does the API support pagination?",
        "List endpoints use cursor pagination. Pass the next_cursor value from the previous response "
        "until it comes back empty.",
    ),
    (
        "How do I verify webhook signatures?",
        "Compute an HMAC-SHA256 of the raw request body with your webhook secret and compare it with the "
        "X-Signature header using a constant-time comparison.",
    ),
    (
        "Can I use the product offline?",
        "The desktop app caches your recent projects so you can read them offline. Edits sync "
        "automatically once you reconnect.",
    ),
    (
        "How many seats are included in the Team plan?",
        "The Team plan includes 10 seats. Additional seats can be added at any time and are prorated for "
        "the current cycle.",
    ),
    (
        "How do I add a VAT number to my invoices?",
        "Enter your VAT ID under Billing → Company details. It appears on every invoice issued after the "
        "change, and EU reverse charge is applied automatically.",
    ),
    (
        "Where can I check the service status?",
        "Live status and incident history are on status.example.com. You can subscribe there to email or "
        "webhook updates.",
    ),
    (
        "Do you have a mobile app?",
        "Yes, there are iOS and Android apps with the same sign-in as the web app, including SSO.",
    ),
    (
        "How do I change the workspace time zone?",
        "Admins can set the time zone under Settings → General. Reports and scheduled jobs use it from then on.",
    ),
    (
        "How do I recover a deleted project?",
        "Deleted projects stay in Trash for 30 days. Open Trash from the sidebar and click Restore.",
    ),
    (
        "Can I schedule reports by email?",
        "Yes. Open a report, click Schedule and choose recipients and a daily, weekly or monthly cadence.",
    ),
    (
        "How do I increase my file upload limit?",
        "Uploads are limited to 250 MB on Team and 2 GB on Business and Enterprise. Upgrading raises the "
        "limit immediately.",
    ),
    (
        "What does the 429 error mean?",
        "A 429 means you exceeded the rate limit. Wait for the number of seconds in the Retry-After header "
        "before sending more requests.",
    ),
    (
        "How do I revoke a user's sessions?",
        "Open the member's profile under Settings → Members and click Sign out everywhere. Their API "
        "tokens stay valid until you revoke them separately.",
    ),
    (
        "Is there a GDPR data processing agreement?",
        "Yes, our DPA is pre-signed and available under Settings → Legal. It includes the EU Standard "
        "Contractual Clauses.",
    ),
    (
        "How do I merge two workspaces?",
        "Merging is done by our support team. Export the list of projects you want to move and reply to "
        "this ticket; we schedule the merge within two business days.",
    ),
    (
        "Can I set granular role permissions?",
        "Business and Enterprise plans support custom roles. Create one under Settings → Roles and choose "
        "permissions per area.",
    ),
    (
        "How do I get a copy of the SOC 2 report?",
        "Request it from the Trust Center at trust.example.com. We share it after a short NDA is signed.",
    ),
    (
        "How do I change the language of the interface?",
        "Pick your language under Profile → Preferences. The change applies immediately to the web and mobile apps.",
    ),
    (
        "How do I archive a project?",
        "Open the project menu and choose Archive. Archived projects are read-only and do not count toward "
        "your project limit.",
    ),
    (
        "Can guests access shared dashboards?",
        "Yes, share a dashboard with a guest link or invite guests by email. Guests can view but not edit, "
        "and they are free of charge.",
    ),
    (
        "Why is the dashboard loading slowly?",
        "Large date ranges and many widgets slow dashboards down. Narrow the date range or enable cached "
        "widgets under Dashboard settings.",
    ),
    (
        "How do I update my company address on invoices?",
        "Edit the address under Billing → Company details. Past invoices can be reissued with the new "
        "address on request.",
    ),
    (
        "Does the API have an OpenAPI spec?",
        "Yes, the OpenAPI 3.1 document is published at api.example.com/openapi.json and versioned with each release.",
    ),
    (
        "How do I filter webhook events?",
        "Edit the webhook and select only the event types you need. You can also filter by project so "
        "unrelated events are never sent.",
    ),
    (
        "Can I get a receipt for a one-time purchase?",
        "Receipts for one-time purchases are emailed right after payment and also listed under Billing → Invoices.",
    ),
    (
        "How do I reset MFA for a user who lost their phone?",
        "An admin can reset it from Settings → Members → Reset two-factor. The user enrols a new device at "
        "their next sign-in.",
    ),
    (
        "Is there an uptime SLA?",
        "Enterprise plans include a 99.9% monthly uptime SLA with service credits. Other plans are "
        "best-effort with the same infrastructure.",
    ),
)

# Failing rows of the wide monitoring sample: off-target answers, judged statement by statement.
# statements: (short title, statement, verdict, reason).
MONITORING_FAILURES: Final[tuple[dict[str, Any], ...]] = (
    {
        "query": "How do I move our SSO configuration to a new identity provider?",
        "answer": "Thanks for reaching out! Single sign-on makes signing in easier for your whole team. "
        "Our Business plan includes many security features, and you can compare plans on our pricing page.",
        "because": "the answer praises SSO and the pricing page but never explains how to switch the identity provider",
        "statements": (
            (
                "SSO benefit",
                "Single sign-on makes signing in easier for your whole team.",
                "NO",
                "Generic praise does not address migrating the configuration.",
            ),
            (
                "Plan features",
                "The Business plan includes many security features.",
                "NO",
                "Plan marketing is unrelated to the migration steps.",
            ),
            (
                "Pricing page",
                "You can compare plans on the pricing page.",
                "NO",
                "Pointing to pricing does not help with the identity provider change.",
            ),
            (
                "SSO location",
                "SSO is configured under Settings → Security.",
                "YES",
                "Correctly names where the SSO configuration lives.",
            ),
            (
                "Admin role",
                "Only workspace admins can change SSO settings.",
                "YES",
                "Relevant prerequisite for making the change.",
            ),
        ),
        "compliance_score": 0.33,
    },
    {
        "query": "Why do my API calls return 401 after I rotated the key?",
        "answer": "API keys are an important part of keeping your account secure. We recommend rotating "
        "keys regularly. Let us know if you have any other questions!",
        "because": "it repeats general key-rotation advice instead of pointing out that the old key was "
        "revoked before the integrations were updated",
        "statements": (
            (
                "Security value",
                "API keys keep your account secure.",
                "NO",
                "True but does not explain the 401 responses.",
            ),
            ("Rotation advice", "Rotate keys regularly.", "NO", "Advice, not a diagnosis."),
            (
                "401 meaning",
                "A 401 means the request carried an invalid or revoked key.",
                "YES",
                "Explains the status code the user sees.",
            ),
            (
                "Update integrations",
                "Integrations must use the new key before the old one is revoked.",
                "YES",
                "This is the actual cause of the failures.",
            ),
        ),
        "compliance_score": None,
    },
    {
        "query": "Do I get a prorated refund if I remove seats halfway through the year?",
        "answer": "Seats help your team collaborate. You can add or remove seats whenever you like from the "
        "Members page, and new members receive an invitation email.",
        "because": "the answer describes managing seats but says nothing about refunds or proration for removed seats",
        "statements": (
            ("Collaboration", "Seats help your team collaborate.", "NO", "Irrelevant to refunds."),
            (
                "Seat management",
                "Seats can be added or removed from the Members page.",
                "YES",
                "Partially relevant: removing seats is the user's action.",
            ),
            ("Invitations", "New members receive an invitation email.", "NO", "Unrelated to removing seats."),
            (
                "Billing cycle",
                "Removed seats are credited at the next renewal, not refunded.",
                "YES",
                "Answers the proration question.",
            ),
            ("Invoices", "Invoices are listed under Billing.", "NO", "Does not address the refund."),
            ("Support contact", "Contact support for anything else.", "NO", "Filler statement."),
        ),
        "compliance_score": 0.33,
    },
)

# One-sentence judge rationales for healthy wide-monitoring rows.
MONITORING_HEALTHY_EXPLANATIONS: Final[tuple[str, ...]] = (
    "The answer addresses the question directly and gives concrete next steps.",
    "Accurate, concise and consistent with the help-center article.",
    "The response is relevant and coherent; one detail could be more specific.",
    "Clear steps that match the documented behaviour of the product.",
    "Directly answers the question with correct product details.",
    "Helpful and on topic, with a useful follow-up tip.",
    "Correct answer with appropriate scope; no unsupported claims.",
    "Relevant and well structured; accuracy slightly limited by a missing edge case.",
)

# Deflecting answers used by failing records of the long monitoring sample.
DEFLECTING_ANSWERS: Final[tuple[str, ...]] = (
    "Thanks for your question! Please have a look at our help center, which covers this topic in detail.",
    "I'm not sure about that one. Our team is always improving the product, so it may be available soon.",
    "That depends on your setup. Please contact your workspace administrator for more information.",
)

# ---------------------------------------------------------------------------------------------
# Tree-format model evaluation items (example_model*.csv).
# ---------------------------------------------------------------------------------------------
MODEL_ITEMS: Final[tuple[dict[str, str], ...]] = (
    {
        "query": "What is the difference between a process and a thread?",
        "expected": "A process has its own address space; threads run inside a process and share its memory.",
        "strong": "A process is an independent program with its own address space and resources. Threads "
        "live inside a process and share its memory, so they are cheaper to create but need "
        "synchronisation when they touch shared data.",
        "weak": "Processes and threads are basically the same thing; a thread is just a smaller process.",
        "category": "operating_systems",
        "difficulty": "easy",
    },
    {
        "query": "What does HTTP status code 404 mean?",
        "expected": "The server could not find the requested resource.",
        "strong": "404 Not Found means the server is reachable but has no resource at the requested URL. "
        "It is a client-side error in the 4xx class.",
        "weak": "404 means the server crashed while handling the request.",
        "category": "web",
        "difficulty": "easy",
    },
    {
        "query": "How does HTTPS protect data in transit?",
        "expected": "TLS authenticates the server with a certificate and encrypts traffic with negotiated "
        "session keys.",
        "strong": "HTTPS runs HTTP over TLS. The server proves its identity with a certificate signed by a "
        "trusted authority, both sides agree on session keys, and all traffic is then encrypted and "
        "integrity-protected.",
        "weak": "HTTPS hides your IP address so nobody can see which site you visit.",
        "category": "security",
        "difficulty": "medium",
    },
    {
        "query": "What is a database index and when should you add one?",
        "expected": "A sorted auxiliary structure that speeds up lookups; add it for frequent filters or "
        "joins, at the cost of slower writes.",
        "strong": "An index is an auxiliary data structure, usually a B-tree, that lets the database find "
        "rows without scanning the whole table. Add one for columns you filter, join or sort on often; "
        "every index slows writes and uses storage.",
        "weak": "An index is a backup copy of the table. You should add one to every column.",
        "category": "databases",
        "difficulty": "medium",
    },
    {
        "query": "Explain what a race condition is.",
        "expected": "A bug where the result depends on the timing of concurrent operations on shared state.",
        "strong": "A race condition happens when two concurrent operations access shared state and the "
        "outcome depends on their timing, for example two threads incrementing a counter without a lock.",
        "weak": "A race condition is when one program runs faster than another.",
        "category": "concurrency",
        "difficulty": "medium",
    },
    {
        "query": "What is the time complexity of binary search?",
        "expected": "O(log n) on a sorted array.",
        "strong": "Binary search halves the search interval at each step, so it runs in O(log n) time on a "
        "sorted array and needs O(1) extra space in its iterative form.",
        "weak": "Binary search is O(n) because it may have to look at every element.",
        "category": "algorithms",
        "difficulty": "easy",
    },
    {
        "query": "What is the purpose of a Python virtual environment?",
        "expected": "Isolating a project's interpreter and installed packages from other projects.",
        "strong": "A virtual environment gives a project its own interpreter link and site-packages, so its "
        "dependencies and versions do not clash with other projects or the system Python.",
        "weak": "A virtual environment makes Python run faster by compiling the code.",
        "category": "python",
        "difficulty": "easy",
    },
    {
        "query": "What does the CAP theorem state?",
        "expected": "During a network partition a distributed store must choose between consistency and availability.",
        "strong": "The CAP theorem says that when a network partition occurs, a distributed data store "
        "cannot be both consistent and available; it has to give up one of them until the partition "
        "heals.",
        "weak": "CAP says a database can only have two of: speed, price and quality.",
        "category": "distributed_systems",
        "difficulty": "hard",
    },
    {
        "query": "Why is floating-point 0.1 + 0.2 not exactly 0.3?",
        "expected": "0.1 and 0.2 have no exact binary representation, so rounding errors accumulate.",
        "strong": "Binary floating point cannot represent 0.1 or 0.2 exactly, so each is stored as the "
        "nearest representable value and the sum carries the rounding error: 0.30000000000000004.",
        "weak": "It is a bug in the CPU that newer processors have fixed.",
        "category": "numerics",
        "difficulty": "medium",
    },
    {
        "query": "What is the difference between TCP and UDP?",
        "expected": "TCP is connection-oriented and reliable with ordering; UDP is connectionless and best-effort.",
        "strong": "TCP sets up a connection and guarantees ordered, reliable delivery with retransmission "
        "and congestion control. UDP sends independent datagrams with no delivery or ordering guarantee, "
        "which keeps latency low.",
        "weak": "TCP is used for the web and UDP is used for email.",
        "category": "networking",
        "difficulty": "easy",
    },
    {
        "query": "What is gradient descent?",
        "expected": "An iterative optimisation method that steps parameters against the gradient of the loss.",
        "strong": "Gradient descent minimises a loss function by repeatedly moving the parameters a small "
        "step, set by the learning rate, in the direction of the negative gradient.",
        "weak": "Gradient descent is a way to sort data from the largest value to the smallest.",
        "category": "machine_learning",
        "difficulty": "medium",
    },
    {
        "query": "What does ACID stand for in databases?",
        "expected": "Atomicity, Consistency, Isolation, Durability.",
        "strong": "ACID stands for Atomicity (all or nothing), Consistency (constraints hold), Isolation "
        "(concurrent transactions do not interfere) and Durability (committed data survives crashes).",
        "weak": "ACID stands for Access, Control, Integrity and Data.",
        "category": "databases",
        "difficulty": "easy",
    },
    {
        "query": "What is overfitting in machine learning?",
        "expected": "A model that fits noise in the training data and generalises poorly to new data.",
        "strong": "Overfitting is when a model learns the noise of its training data instead of the "
        "underlying pattern, so training error is low but error on unseen data is high. Regularisation, "
        "more data and early stopping help.",
        "weak": "Overfitting means the model is too small to learn anything.",
        "category": "machine_learning",
        "difficulty": "medium",
    },
    {
        "query": "How does a hash map handle collisions?",
        "expected": "With chaining (buckets hold lists) or open addressing (probe for another slot).",
        "strong": "Collisions are handled either by chaining, where each bucket holds a small list of "
        "entries, or by open addressing, where the map probes other slots until it finds a free one.",
        "weak": "Hash maps never have collisions because every key gets a unique hash.",
        "category": "algorithms",
        "difficulty": "medium",
    },
    {
        "query": "What is the role of DNS?",
        "expected": "It resolves human-readable domain names to IP addresses.",
        "strong": "DNS is the internet's naming system: resolvers translate a domain name such as "
        "example.com into the IP addresses of its servers, caching answers according to their TTL.",
        "weak": "DNS encrypts web traffic between the browser and the server.",
        "category": "networking",
        "difficulty": "easy",
    },
    {
        "query": "What is eventual consistency?",
        "expected": "Replicas may briefly disagree but converge to the same value once updates stop.",
        "strong": "Under eventual consistency, replicas can return stale data for a while after a write, "
        "but if no new updates arrive they all converge to the same latest value.",
        "weak": "Eventual consistency means the data is consistent at the end of every day.",
        "category": "distributed_systems",
        "difficulty": "hard",
    },
)

# Component explanations by score band: (component, band) -> sentence.
MODEL_EXPLANATIONS: Final[dict[str, tuple[str, str, str]]] = {
    "faithfulness": (
        "Contains claims that contradict the reference answer.",
        "Mostly grounded, with one claim the reference does not support.",
        "Every claim is supported by the reference answer.",
    ),
    "answer_relevance": (
        "Largely misses the question that was asked.",
        "Addresses the question but drifts into side topics.",
        "Directly answers the question without digression.",
    ),
    "completeness": (
        "Omits most of the key points of the expected answer.",
        "Covers the main point but leaves out a detail.",
        "Covers all key points of the expected answer.",
    ),
    "answer_quality": (
        "Weighted quality is low: the answer is misleading or incomplete.",
        "Weighted quality is acceptable with room for improvement.",
        "Weighted quality is high across all components.",
    ),
}

# ---------------------------------------------------------------------------------------------
# Annotation sample (markdown answers 200–750 chars).
# ---------------------------------------------------------------------------------------------
ANNOTATION_ITEMS: Final[tuple[dict[str, str], ...]] = (
    {
        "query": "What causes the seasons on Earth?",
        "answer": "## Why we have seasons\n\nSeasons are caused by the **tilt of Earth's axis** (about 23.4°), "
        "not by the distance to the Sun.\n\n- When the Northern Hemisphere leans toward the Sun, sunlight "
        "hits it more directly and days are longer: summer.\n- Six months later it leans away: winter.\n\n"
        "Earth is actually closest to the Sun in early January.",
        "rubric": "Mentions axial tilt, direct vs. indirect sunlight and day length; rejects the distance myth.",
    },
    {
        "query": "How do I reverse a list in Python?",
        "answer": "### Three ways to reverse a list\n\n1. In place: `items.reverse()`\n2. A reversed copy "
        "with slicing: `items[::-1]`\n3. A lazy iterator: `reversed(items)`\n\n```python\nitems = [1, 2, 3]"
        "\nitems.reverse()\nprint(items)  # [3, 2, 1]\n```\n\nUse `reverse()` when you no longer need the "
        "original order.",
        "rubric": "Shows list.reverse(), slicing [::-1] and reversed(), and explains in-place vs. copy.",
    },
    {
        "query": "Compare SQL and NoSQL databases.",
        "answer": "## SQL vs. NoSQL\n\n| Aspect | SQL | NoSQL |\n|---|---|---|\n| Schema | Fixed, "
        "declared up front | Flexible |\n| Scaling | Mostly vertical | Mostly horizontal |\n| Transactions "
        "| Strong ACID | Often eventual consistency |\n| Query language | SQL | API or custom |\n\nPick SQL for "
        "relational data with integrity rules; pick NoSQL for very large, loosely structured or "
        "fast-changing data.",
        "rubric": "Contrasts schema, scaling, consistency and query model, with guidance on when to use each.",
    },
    {
        "query": "What is photosynthesis?",
        "answer": "## Photosynthesis\n\nPlants, algae and some bacteria turn light into chemical energy.\n\n"
        "**Overall reaction:** 6 CO₂ + 6 H₂O + light → C₆H₁₂O₆ + 6 O₂\n\n1. *Light reactions* in the "
        "thylakoids split water and make ATP and NADPH.\n2. The *Calvin cycle* in the stroma uses them to "
        "fix CO₂ into sugar.",
        "rubric": "Gives the overall equation and both stages (light reactions, Calvin cycle) with locations.",
    },
    {
        "query": "Explain Big-O notation with examples.",
        "answer": "## Big-O in one minute\n\nBig-O describes how running time grows with input size `n`, "
        "ignoring constants.\n\n| Notation | Example |\n|---|---|\n| O(1) | Reading an array element |\n| "
        "O(log n) | Binary search |\n| O(n) | Scanning a list |\n| O(n log n) | Merge sort |\n| O(n²) | "
        "Comparing every pair |\n\nIt is an upper bound, so an O(n) algorithm is also O(n²).",
        "rubric": "Defines growth rate, drops constants, gives at least four classes with examples.",
    },
    {
        "query": "How do I undo the last Git commit?",
        "answer": "### Undoing the last commit\n\n- Keep the changes staged: `git reset --soft HEAD~1`\n- "
        "Discard the changes entirely: `git reset --hard HEAD~1` (`git stash pop` brings them back later)"
        "\n\n```bash\ngit reset --soft HEAD~1\n"
        "git status\n```\n\nIf the commit is already pushed, prefer `git revert HEAD`, which records a new "
        "commit instead of rewriting history.",
        "rubric": "Covers soft vs. hard reset and recommends git revert for pushed commits.",
    },
    {
        "query": "What were the main causes of World War I?",
        "answer": "## Main causes of World War I\n\nHistorians often summarise them as **MAIN**:\n\n- "
        "**Militarism**: an arms race, especially between Britain and Germany\n- **Alliances**: the Triple "
        "Entente vs. the Triple Alliance\n- **Imperialism**: rivalry over colonies\n- **Nationalism**: "
        "especially in the Balkans\n\nThe trigger was the assassination of Archduke Franz Ferdinand in June "
        "1914.",
        "rubric": "Names militarism, alliances, imperialism, nationalism and the assassination as trigger.",
    },
    {
        "query": "How does HTTPS keep a connection secure?",
        "answer": "## HTTPS basics\n\nHTTPS is HTTP over TLS. The server sends a certificate, the browser "
        "checks it against trusted authorities and both sides agree on session keys.\n\nAfter the "
        "handshake, all data is encrypted.",
        "rubric": "Explains certificates, the handshake and symmetric encryption; mentions integrity and "
        "forward secrecy.",
    },
    {
        "query": "Write a SQL query that returns the top 5 customers by total order value.",
        "answer": "### Top customers by revenue\n\n```sql\nSELECT customer_id,\n       SUM(amount) AS "
        "total_value\nFROM orders\nGROUP BY customer_id\nORDER BY total_value DESC\nLIMIT 5;\n```\n\n- "
        "`GROUP BY` aggregates the orders per customer.\n- `ORDER BY ... DESC` puts the largest totals "
        "first.\n- `LIMIT 5` keeps the top five.",
        "rubric": "Uses SUM with GROUP BY, orders descending and limits to 5; explains each clause.",
    },
    {
        "query": "What is the difference between weather and climate?",
        "answer": "## Weather vs. climate\n\n- **Weather** is the state of the atmosphere over hours or "
        "days: today's rain, tomorrow's heat.\n- **Climate** is the long-term average of weather in a "
        "region, usually over 30 years or more.\n\nA cold week does not disprove a warming climate, just as "
        "one hot day does not prove it.",
        "rubric": "Distinguishes short-term conditions from 30-year averages, with an example.",
    },
)

# (row index, judgment, critique, user_tags or None) for the 4 annotated rows.
ANNOTATION_JUDGMENTS: Final[tuple[tuple[int, str, str, list[str] | None], ...]] = (
    (0, "accept", "Correct and clearly debunks the distance misconception.", ["Excellent"]),
    (2, "accept", "Good comparison table; could mention NewSQL.", None),
    (
        5,
        "reject",
        "Wrong: git stash pop cannot recover work discarded by reset --hard; no warning about data loss.",
        ["Incomplete", "Factual Error"],
    ),
    (7, "4", "Accurate but too short: no mention of integrity checks or forward secrecy.", ["Incomplete"]),
)

# ---------------------------------------------------------------------------------------------
# Calibration ("align") sample.
# ---------------------------------------------------------------------------------------------
ALIGN_ITEMS: Final[tuple[dict[str, str], ...]] = (
    {
        "query": "What is the capital of Canada?",
        "answer": "The capital of Canada is Ottawa, in the province of Ontario.",
        "expected": "Ottawa",
    },
    {
        "query": "How do I boil an egg so the yolk stays soft?",
        "answer": "Lower the egg into boiling water, cook it for 6 to 7 minutes, then cool it in ice water "
        "for a minute before peeling.",
        "expected": "Boil 6–7 minutes, then chill in ice water.",
    },
    {
        "query": "Who wrote Pride and Prejudice?",
        "answer": "Pride and Prejudice was written by Jane Austen and published in 1813.",
        "expected": "Jane Austen",
    },
    {
        "query": "How many bones are in the adult human body?",
        "answer": "Well, that's a great question and it depends on how you count. Babies have more bones, "
        "maybe around 300, and some of them fuse later, so adults have fewer, possibly somewhere around "
        "200-something, though I'm honestly not completely sure about the exact figure.",
        "expected": "206",
    },
    {
        "query": "How do I take a screenshot on Windows?",
        "answer": "Press Windows + Shift + S to open Snipping Tool, select an area, and the screenshot is "
        "copied to the clipboard.",
        "expected": "Windows + Shift + S (or PrtScn).",
    },
)

# ---------------------------------------------------------------------------------------------
# Eval-runner sample (retrieval QA with one passage per row).
# ---------------------------------------------------------------------------------------------
EVAL_RUNNER_ITEMS: Final[tuple[dict[str, str], ...]] = (
    {
        "query": "When was the Eiffel Tower completed?",
        "answer": "The Eiffel Tower was completed in 1889.",
        "expected": "It was completed in March 1889.",
        "passage": "The Eiffel Tower, designed by Gustave Eiffel's company, was completed in March 1889 as the "
        "entrance arch to the 1889 World's Fair in Paris.",
    },
    {
        "query": "What is the boiling point of water at sea level?",
        "answer": "Water boils at 100 °C (212 °F) at sea level.",
        "expected": "100 °C or 212 °F.",
        "passage": "At standard atmospheric pressure (101.325 kPa), pure water boils at 100 degrees Celsius.",
    },
    {
        "query": "Who developed the theory of general relativity?",
        "answer": "Albert Einstein developed general relativity, publishing it in 1915.",
        "expected": "Albert Einstein.",
        "passage": "General relativity, published by Albert Einstein in 1915, describes gravity as the "
        "curvature of spacetime caused by mass and energy.",
    },
    {
        "query": "What is the largest planet in the Solar System?",
        "answer": "Jupiter is the largest planet in the Solar System.",
        "expected": "Jupiter.",
        "passage": "Jupiter is the fifth planet from the Sun and the largest in the Solar System, with a mass "
        "more than twice that of all the other planets combined.",
    },
    {
        "query": "What language is primarily spoken in Brazil?",
        "answer": "The official and most widely spoken language in Brazil is Portuguese.",
        "expected": "Portuguese.",
        "passage": "Portuguese is the official language of Brazil and is spoken by nearly the entire population.",
    },
    {
        "query": "How many continents are there?",
        "answer": "There are seven continents.",
        "expected": "Seven, by the most common convention.",
        "passage": "By the most widely taught convention there are seven continents: Africa, Antarctica, "
        "Asia, Australia, Europe, North America and South America.",
    },
    {
        "query": "What gas do plants absorb during photosynthesis?",
        "answer": "Plants absorb carbon dioxide and release oxygen.",
        "expected": "Carbon dioxide.",
        "passage": "During photosynthesis, plants take in carbon dioxide and water and, using light energy, "
        "produce glucose and oxygen.",
    },
    {
        "query": "Which ocean is the largest?",
        "answer": "The Atlantic Ocean is the largest ocean.",
        "expected": "The Pacific Ocean.",
        "passage": "The Pacific Ocean is the largest and deepest of Earth's oceans, covering about 165 million "
        "square kilometres.",
    },
    {
        "query": "What is the chemical symbol for gold?",
        "answer": "The chemical symbol for gold is Au.",
        "expected": "Au.",
        "passage": "Gold is a chemical element with the symbol Au, from the Latin word aurum, and atomic number 79.",
    },
    {
        "query": "Who painted the Mona Lisa?",
        "answer": "Leonardo da Vinci painted the Mona Lisa in the early 16th century.",
        "expected": "Leonardo da Vinci.",
        "passage": "The Mona Lisa is a half-length portrait painted by Leonardo da Vinci, begun around 1503 "
        "and kept at the Louvre in Paris since 1797.",
    },
)

# ---------------------------------------------------------------------------------------------
# Long-format monitoring: metric texts.
# ---------------------------------------------------------------------------------------------
LONG_SCORE_EXPLANATIONS: Final[dict[str, tuple[str, str]]] = {
    "relevance": (
        "The response does not address the user's actual question.",
        "The response stays on the user's question.",
    ),
    "faithfulness": (
        "The response makes claims not supported by the knowledge base.",
        "All claims are supported by the retrieved help-center articles.",
    ),
    "helpfulness": (
        "The user would still need to contact support to finish the task.",
        "The user can complete the task from the answer alone.",
    ),
}

# ANALYSIS texts: (root cause, suggested action, multi-line explanation) for problematic records.
LONG_ANALYSIS_ISSUES: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "missing_knowledge",
        "Add a help-center article covering this question.",
        "The agent could not find a matching article and fell back to a generic reply.\n"
        "Retrieval returned no document above the similarity threshold.",
    ),
    (
        "deflection",
        "Tighten the prompt so the agent answers before pointing to other resources.",
        "The agent deflected to the help center instead of answering.\n"
        "The question is covered by existing documentation.",
    ),
    (
        "wrong_audience",
        "Route admin-only questions to the admin playbook.",
        "The agent told the user to contact an administrator although the user is the administrator.",
    ),
)

LONG_ANALYSIS_OK: Final[tuple[str, ...]] = (
    "No issues found; the answer follows the documented procedure.",
    "Answer is complete and cites the correct settings path.",
    "Short and correct; no follow-up needed.",
)

# ---------------------------------------------------------------------------------------------
# Human-signals (HITL) cases: conversations and per-metric signals.
# ---------------------------------------------------------------------------------------------
HITL_CASES: Final[tuple[dict[str, Any], ...]] = (
    {
        "channel_id": "support-billing",
        "turn_count": 5,
        "user_message_count": 3,
        "messages": (
            (
                "assistant",
                "New support case: {ticket}\n**Customer:** Northwind Traders\n**Topic:** Duplicate "
                "charge on the May invoice\n**Priority:** High\n- Plan: Business (annual)\n- Amount: $1,240.00 "
                "charged twice",
            ),
            ("user", "We were charged twice for our annual renewal. Can you reverse one of the charges?"),
            (
                "assistant",
                "I can see two identical charges of $1,240.00 on 2 May. Refunds over $1,000 need "
                "approval from the billing team, so I'm looping them in.",
            ),
            ("user", "This is the second time it has happened. How long will the refund take?"),
            ("assistant", "@billing-team please approve a refund of the duplicate charge for Northwind Traders."),
            ("user", "Thanks. Please also make sure it doesn't happen again next year."),
            (
                "assistant",
                "The duplicate charge has been refunded and should appear on your statement within "
                "5–10 business days. I've also added a note to your account so the renewal is charged once.",
            ),
        ),
        "signals": {
            "escalation_type": {
                "is_escalated": True,
                "escalation_type": "team_mention",
                "escalation_turn_index": 4,
                "escalation_targets": ["@billing-team"],
                "escalation_reason": "Refunds above $1,000 require billing approval.",
            },
            "intervention_type": {
                "has_intervention": True,
                "intervention_type": "approval",
                "intervention_escalation": "team_mention",
                "is_compliant": True,
                "intervention_summary": "Billing approved the refund requested by the agent.",
                "friction_point": "refund_approval",
                "issue_details": "Customer waited for a manual approval step.",
            },
            "resolution_status": {
                "final_status": "resolved",
                "is_resolved": True,
                "resolution_type": "refund_issued",
                "is_stalemate": False,
                "time_to_resolution_seconds": 5400,
            },
            "failed_step": {
                "failed_step": "none",
                "evidence": "Every step completed; the refund was issued.",
                "remediation_hint": None,
            },
            "attribution_confidence": {
                "confidence": "high",
                "reasoning": "The refund confirmation is explicit in the final message.",
            },
            "learnings_count": {
                "count": 1,
                "learnings": ["Duplicate annual renewals need an automatic duplicate-charge check."],
            },
            "feature_requests_count": {
                "count": 2,
                "requests": ["Self-service refund for duplicate charges", "Renewal charge notifications"],
            },
            "has_actionable_feedback": {
                "has_actionable_feedback": True,
                "feedback_items": ["Prevent duplicate renewal charges."],
            },
            "priority_level": {
                "priority": "high",
                "reasoning": "Financial impact and a repeat occurrence.",
            },
            "sentiment_category": {
                "sentiment": "frustrated",
                "reasoning": "Customer notes this is the second duplicate charge.",
            },
            "frustration_cause": {
                "cause": "repeat_issue",
                "details": "The same billing error happened at the previous renewal.",
            },
            "acceptance_status": {
                "status": "accepted",
                "reasoning": "Customer thanked the agent and accepted the refund timeline.",
            },
            "override_type": {
                "override": "none",
                "reasoning": "The agent's proposal was approved without changes.",
            },
        },
    },
    {
        "channel_id": "support-technical",
        "turn_count": 4,
        "user_message_count": 2,
        "messages": (
            (
                "assistant",
                "New support case: {ticket}\n**Customer:** Fabrikam Labs\n**Topic:** Webhook "
                "deliveries failing\n**Priority:** Normal\n- Endpoint: https://hooks.fabrikam.example/events\n"
                "- Failures since: 09:40 UTC",
            ),
            ("user", "Our webhook endpoint stopped receiving events this morning. Nothing changed on our side."),
            (
                "assistant",
                "The delivery log shows your endpoint answering with HTTP 301 since 09:40 UTC. "
                "Webhooks do not follow redirects.",
            ),
            (
                "assistant",
                "It looks like the endpoint now redirects from http to https. Could you update the "
                "webhook URL to the https address?",
            ),
            ("user", "Updated it to https. Do we need to replay the missed events?"),
            (
                "assistant",
                "Deliveries are succeeding again, and the failed events from this morning were "
                "replayed automatically. No action is needed on your side.",
            ),
        ),
        "signals": {
            "escalation_type": {
                "is_escalated": False,
                "escalation_type": "none",
                "escalation_turn_index": None,
                "escalation_targets": [],
                "escalation_reason": "",
            },
            "intervention_type": {
                "has_intervention": False,
                "intervention_type": "none",
                "intervention_escalation": "none",
                "is_compliant": True,
                "intervention_summary": "Resolved by the agent without human help.",
                "friction_point": None,
                "issue_details": None,
            },
            "resolution_status": {
                "final_status": "resolved",
                "is_resolved": True,
                "resolution_type": "configuration_fix",
                "is_stalemate": False,
                "time_to_resolution_seconds": 1800,
            },
            "failed_step": {
                "failed_step": "none",
                "evidence": "Root cause identified from the delivery log on the first reply.",
                "remediation_hint": None,
            },
            "attribution_confidence": {
                "confidence": "high",
                "reasoning": "Deliveries recovered right after the URL change.",
            },
            "learnings_count": {"count": 0, "learnings": []},
            "feature_requests_count": {
                "count": 1,
                "requests": ["Alert when webhook endpoints start redirecting"],
            },
            "has_actionable_feedback": {
                "has_actionable_feedback": False,
                "feedback_items": [],
            },
            "priority_level": {
                "priority": "normal",
                "reasoning": "Events were replayed, so no data was lost.",
            },
            "sentiment_category": {
                "sentiment": "positive",
                "reasoning": "Customer followed the fix quickly and without complaint.",
            },
            "frustration_cause": {"cause": "none", "details": ""},
            "acceptance_status": {
                "status": "accepted",
                "reasoning": "Customer applied the suggested fix.",
            },
            "override_type": {
                "override": "none",
                "reasoning": "No human changed the agent's answer.",
            },
        },
    },
    {
        "channel_id": "support-accounts",
        "turn_count": 5,
        "user_message_count": 3,
        "messages": (
            (
                "assistant",
                "New support case: {ticket}\n**Customer:** Contoso Health\n**Topic:** SSO login "
                "loop after domain change\n**Priority:** High\n- Identity provider: Okta\n- Affected users: "
                "~120",
            ),
            ("user", "Since we changed our email domain, everyone gets stuck in a login loop with SSO."),
            (
                "assistant",
                "Please check that the new domain is verified under Settings → Domains and that "
                "Okta sends the new email address as the NameID.",
            ),
            ("user", "The domain is verified and Okta sends the new address. Still looping."),
            (
                "assistant",
                "I'm escalating this to @identity-team because the session cookie is rejected "
                "after the SAML response, which I can't fix from here.",
            ),
            ("user", "We need this fixed today, our clinicians can't log in."),
            (
                "assistant",
                "The identity team is investigating the rejected session cookie. As a workaround, "
                "admins can enable password sign-in for affected users under Settings → Security.",
            ),
        ),
        "signals": {
            "escalation_type": {
                "is_escalated": True,
                "escalation_type": "team_mention",
                "escalation_turn_index": 4,
                "escalation_targets": ["@identity-team"],
                "escalation_reason": "Session cookie rejected after the SAML response.",
            },
            "intervention_type": {
                "has_intervention": True,
                "intervention_type": "takeover",
                "intervention_escalation": "engineering",
                "is_compliant": False,
                "intervention_summary": "An engineer took over and proposed a temporary workaround.",
                "friction_point": "sso_configuration",
                "issue_details": "Workaround weakens the SSO-only policy.",
            },
            "resolution_status": {
                "final_status": "pending",
                "is_resolved": False,
                "resolution_type": "workaround",
                "is_stalemate": True,
                "time_to_resolution_seconds": 14400,
            },
            "failed_step": {
                "failed_step": "session_creation",
                "evidence": "SAML assertion accepted but the session cookie was rejected.",
                "remediation_hint": "Re-issue session cookies for the new domain after a domain change.",
            },
            "attribution_confidence": {
                "confidence": "medium",
                "reasoning": "The cookie rejection is likely but not confirmed by engineering.",
            },
            "learnings_count": {
                "count": 2,
                "learnings": [
                    "Domain changes invalidate SSO session cookies.",
                    "Offer a documented fallback sign-in for regulated customers.",
                ],
            },
            "feature_requests_count": {"count": 0, "requests": []},
            "has_actionable_feedback": {
                "has_actionable_feedback": True,
                "feedback_items": ["Add a domain-change checklist for SSO.", "Warn before a domain change."],
            },
            "priority_level": {
                "priority": "high",
                "reasoning": "About 120 clinicians are locked out.",
            },
            "sentiment_category": {
                "sentiment": "concerned",
                "reasoning": "Customer stresses the operational impact on clinicians.",
            },
            "frustration_cause": {
                "cause": "unresolved_issue",
                "details": "The suggested checks did not fix the login loop.",
            },
            "acceptance_status": {
                "status": "rejected",
                "reasoning": "The workaround conflicts with the customer's SSO-only policy.",
            },
            "override_type": {
                "override": "human_takeover",
                "reasoning": "An engineer replaced the agent's troubleshooting with a workaround.",
            },
        },
    },
)
